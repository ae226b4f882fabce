"""Progress: the library reports (phase, done, total) with totals up front; the CLI draws it on a terminal only.

The command-line half drives the installed ``unlearn`` with stderr on a
pseudo-terminal (``pty.openpty``), on a pipe, and with ``--quiet``; the
library half collects the callback's reports in a list.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import run_cli, unlearn_cmd, write_blobs

EPOCHS = "30"
LINEAR = {"name": "linear", "kwargs": {"input_shape": [2], "num_classes": 2}}


def run_on_terminal(*args, timeout: float = 300) -> tuple[int, bytes, bytes]:
    """(exit code, stdout from a pipe, stderr from a pseudo-terminal 120 columns wide)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(unlearn_cmd() + [str(a) for a in args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        reader.join(timeout=10)
        os.close(master)
    return proc.returncode, out, b"".join(chunks)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[int, bytes, bytes]]:
    """train and forget --method retrain, each on a terminal, on a pipe, and with --quiet; train on a terminal with --json."""
    work = tmp_path_factory.mktemp("progress")
    manifest = write_blobs(work / "data")
    from unlearn_cli.data.manifest import load_manifest

    ids = work / "ids.txt"
    ids.write_text("\n".join(str(i) for i in load_manifest(manifest).train_ids[:5]) + "\n")

    def piped(*args):
        proc = run_cli(*args, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr

    def train(name: str, *extra):
        return ["train", manifest, "--out", work / f"{name}.safetensors", "--epochs", EPOCHS, *extra]

    def forget(name: str, *extra):
        return ["forget", work / "tty.safetensors", ids, "--method", "retrain", "--out",
                work / f"{name}.retrained.safetensors", "--ledger", work / f"{name}.ledger.jsonl", *extra]

    with ThreadPoolExecutor(max_workers=3) as pool:
        first = {"train-tty": pool.submit(run_on_terminal, *train("tty")),
                 "train-pipe": pool.submit(piped, *train("pipe")),
                 "train-quiet": pool.submit(run_on_terminal, *train("quiet", "--quiet")),
                 "train-json": pool.submit(run_on_terminal, *train("json", "--json"))}
        results = {name: future.result() for name, future in first.items()}
        second = {"forget-tty": pool.submit(run_on_terminal, *forget("tty")),
                  "forget-pipe": pool.submit(piped, *forget("pipe")),
                  "forget-quiet": pool.submit(run_on_terminal, *forget("quiet", "--quiet"))}
        results.update({name: future.result() for name, future in second.items()})
    return results


@pytest.mark.parametrize("command,phase", [("train", b"training mlp: epoch"), ("forget", b"retrain: epoch")])
def test_a_terminal_shows_bars_with_real_totals(runs, command, phase) -> None:
    code, out, err = runs[f"{command}-tty"]
    assert code == 0, err.decode(errors="replace")
    assert phase in err
    assert f"/{EPOCHS}".encode() in err and f"{EPOCHS}/{EPOCHS}".encode() in err
    assert b"batch" in err and b"elapsed" in err
    assert b"None" not in err  # every total known from the start


def test_json_on_a_terminal_draws_no_bars_and_stdout_stays_pure(runs) -> None:
    code, out, err = runs["train-json"]
    assert code == 0, err.decode(errors="replace")
    assert b"epoch" not in err and b"batch" not in err and b"\r" not in err
    report = json.loads(out)  # nothing but the report on stdout
    assert report["command"] == "train" and report["status"] == "ok"
    assert b"\x1b" not in out and b"\r" not in out


@pytest.mark.parametrize("command", ["train", "forget"])
def test_a_pipe_gets_no_bars_and_no_control_characters(runs, command) -> None:
    code, out, err = runs[f"{command}-pipe"]
    assert code == 0, err.decode(errors="replace")
    assert b"epoch" not in err and b"batch" not in err
    assert b"\x1b" not in err and b"\r" not in err
    assert b"\x1b" not in out  # rich draws no colours into a pipe either


@pytest.mark.parametrize("command", ["train", "forget"])
def test_quiet_writes_nothing_to_a_terminal(runs, command) -> None:
    code, out, err = runs[f"{command}-quiet"]
    assert code == 0
    assert err == b"" and out == b""


# -- the library reports its totals up front ------------------------------------------


def _collect():
    seen: list[tuple[str, int, int]] = []
    return seen, lambda phase, done, total: seen.append((phase, int(done), int(total)))


def _phases(seen) -> dict[str, list[tuple[int, int]]]:
    found: dict[str, list[tuple[int, int]]] = {}
    for phase, done, total in seen:
        found.setdefault(phase, []).append((done, total))
    return found


def _counts_up_to_its_total(reports: list[tuple[int, int]]) -> None:
    (first_done, total), (last_done, last_total) = reports[0], reports[-1]
    assert first_done == 0 and total > 0  # the total before the first unit of work
    assert all(t == total for _, t in reports)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert last_done == last_total == total


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    from unlearn_cli.data.manifest import load_manifest

    return load_manifest(write_blobs(tmp_path_factory.mktemp("blobs-progress"), n=200))


def test_train_model_reports_epochs_and_batches_from_the_start(blobs) -> None:
    from unlearn_cli.training.fit import fit
    from unlearn_cli.training.loop import Recipe, steps_per_epoch

    seen, progress = _collect()
    recipe = Recipe(epochs=4, batch_size=32)
    rows = blobs.train_indices()
    fit(blobs, rows, LINEAR, recipe, progress=progress)
    assert seen[:2] == [("epoch", 0, 4), ("batch", 0, 4 * steps_per_epoch(len(rows), 32))]
    phases = _phases(seen)
    _counts_up_to_its_total(phases["epoch"])
    _counts_up_to_its_total(phases["batch"])


@pytest.mark.parametrize("solver,phases", [
    ("ekfac", ["curvature: K-FAC factors", "curvature: EK-FAC eigenvalues"]),
    ("exact", ["curvature: GGN rows"]),
    ("cg", ["CG iterations"]),
    ("lissa", ["curvature: LiSSA scale (power iterations)", "LiSSA steps"]),
])
def test_the_engine_reports_its_curvature_build(blobs_checkpoint, solver, phases) -> None:
    from unlearn_cli.influence.engine import InfluenceEngine
    from unlearn_cli.influence.scores import psi
    from unlearn_cli.influence.settings import InfluenceSettings
    from unlearn_cli.models.checkpoint import load_checkpoint
    from unlearn_cli.models.datasets import dataset_for

    ckpt = load_checkpoint(blobs_checkpoint)
    dataset = dataset_for(ckpt, None)
    seen, progress = _collect()
    settings = InfluenceSettings(solver=solver, cache=False, lissa_depth=20)
    engine = InfluenceEngine.build(ckpt, dataset, settings=settings, progress=progress)
    x, y = engine.rows(dataset.train_indices())
    psi(engine.fmodel, engine.objective, x, y, engine.v, progress=engine.progress)
    found = _phases(seen)
    assert list(found) == [*phases, "psi"]
    for reports in found.values():
        _counts_up_to_its_total(reports)
    assert found["psi"][-1] == (len(y), len(y))


def test_the_attack_model_cache_announces_its_models_before_training(tmp_path, blobs) -> None:
    from unlearn_cli.attacks.shadow import MODELS_PHASE, ModelCache, fit_cached
    from unlearn_cli.training.loop import Recipe

    seen, progress = _collect()
    cache = ModelCache(tmp_path / "cache", progress=progress)
    cache.expect(2)
    assert seen == [(MODELS_PHASE, 0, 2)]
    arch = LINEAR
    rows = blobs.train_indices()
    for i in range(2):
        fit_cached(cache, "shadow", {"index": i}, blobs, rows[i::2], arch, Recipe(epochs=2, batch_size=32, seed=i))
    models = _phases(seen)[MODELS_PHASE]
    assert models == [(0, 2), (1, 2), (2, 2)]
    assert [s for s in seen if s[0] == "epoch"][0] == ("epoch", 0, 2)  # each model's epochs, with their total
    again, progress = _collect()
    reuse = ModelCache(tmp_path / "cache", progress=progress)
    reuse.expect(1)
    fit_cached(reuse, "shadow", {"index": 0}, blobs, rows[0::2], arch, Recipe(epochs=2, batch_size=32, seed=0))
    assert again == [(MODELS_PHASE, 0, 1), (MODELS_PHASE, 1, 1)]  # a reused model trains nothing


def test_sisa_reports_shards_and_slice_steps(blobs) -> None:
    from unlearn_cli.training.loop import Recipe
    from unlearn_cli.training.sisa import train_sisa

    seen, progress = _collect()
    train_sisa(blobs, LINEAR, Recipe(epochs=2, batch_size=32), shards=3, slices=2, progress=progress)
    found = _phases(seen)
    assert found["shards"][0] == (0, 3) and found["slice steps"][0] == (0, 6)
    _counts_up_to_its_total(found["shards"])
    _counts_up_to_its_total(found["slice steps"])
    assert np.all([t > 0 for _, t in found["slice steps"]])

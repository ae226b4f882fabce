"""Every registered method and attack through the installed ``unlearn`` on a BatchNorm network.

The built-in ``resnet`` (the default, about 20k parameters: small enough that
two epochs on the tiny image fixture take a second) is trained once per module
as a plain model, a 2x2 SISA ensemble and with ``--track-updates``; then every
method runs on the kind it needs (fine-tuning methods with ``epochs=2``) and
every attack on PUMA's output, in parallel console-script runs. Each run must exit 0 with a finite report, and
its output must load with finite BatchNorm running statistics. PUMA must keep
the running statistics (the influence engine sees the model in eval mode);
fine-tuning methods train in train mode and so move them.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, write_images
from unlearn_cli.attacks.registry import names as attack_names
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.methods.registry import available as available_methods
from unlearn_cli.models.checkpoint import load_checkpoint

METHODS = sorted(available_methods())
ATTACKS = sorted(attack_names())
#: Which trained checkpoint each method needs; every other method runs on the plain one.
KIND = {"sisa": "sisa", "amnesiac": "tracked"}
ATTACK_SETTINGS = {
    "shokri": ["shadows=2", "shadow_epochs=2", "attack_epochs=20", "retain_sample=40"],
    "loss": ["retain_sample=40"],
    "lira": ["references=2", "retain_sample=40"],
    "forget-quality": ["models=2", "retain_sample=40"],
}
FINE_TUNING = ("boundary-shrink", "boundary-expand", "salun", "neggrad", "finetune")


def run_many(jobs: dict[str, list]) -> dict:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, timeout=600) for name, args in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def ok(proc) -> dict:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


def numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def running_stats(path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path).state
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resnet")


@pytest.fixture(scope="module")
def trained(work):
    images = write_images(work / "images", n=120, classes=3)
    common = ["--arch", "resnet", "--epochs", 2, "--quiet"]
    jobs = {
        "plain": ["train", images, "--out", work / "plain.safetensors", *common],
        "sisa": ["train", images, "--out", work / "sisa.safetensors", "--sisa-shards", 2, "--sisa-slices", 2,
                 *common],
        "tracked": ["train", images, "--out", work / "tracked.safetensors", "--track-updates", *common],
    }
    for proc in run_many(jobs).values():
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    ds = load_manifest(images)
    rows = ds.train_indices()
    ids = work / "forget.ids"
    ids.write_text("".join(f"{ds.ids[r]}\n" for r in rows[:6]))
    return {name: work / f"{name}.safetensors" for name in jobs} | {"ids": ids}


@pytest.fixture(scope="module")
def runs(work, trained):
    jobs = {}
    for method in METHODS:
        short = ["--set", "epochs=2"] if method in FINE_TUNING else []
        if method == "puma":  # a smoke test that it runs; its removal check is tested in tests/influence
            short = ["--set", "removal_margin=1"]
        jobs[f"forget/{method}"] = ["forget", trained[KIND.get(method, "plain")], trained["ids"], "--method", method,
                                    *short, "--out", work / f"out.{method}.safetensors", "--json",
                                    "--ledger", work / f"{method}.ledger.jsonl"]
    done = run_many(jobs)
    # Attacks on PUMA's output: forget-quality needs a checkpoint whose lineage removed records.
    jobs = {}
    for attack in ATTACKS:
        settings = [a for s in ATTACK_SETTINGS.get(attack, []) for a in ("--set", s)]
        jobs[f"attack/{attack}"] = ["attack", work / "out.puma.safetensors", "--ids", trained["ids"],
                                    "--attack", attack, *settings, "--cache-dir", work / f"cache-{attack}", "--json"]
    return done | run_many(jobs)


def test_the_trained_resnets_have_finite_running_statistics(trained):
    for name in ("plain", "sisa", "tracked"):
        stats = running_stats(trained[name])
        assert stats, name
        assert all(torch.isfinite(v).all() for v in stats.values()), name


@pytest.mark.parametrize("method", METHODS)
def test_every_method_forgets_on_a_batchnorm_network(method, runs, trained, work):
    report = ok(runs[f"forget/{method}"])
    assert report["status"] == "ok" and report["config"]["method"] == method
    assert all(math.isfinite(v) for v in numbers(report["metrics"])), report["metrics"]
    out = Path(report["outputs"]["checkpoint"]["path"])
    stats = running_stats(out)
    assert stats and all(torch.isfinite(v).all() for v in stats.values())
    before = running_stats(trained[KIND.get(method, "plain")])
    if method == "puma":  # patches parameters only: running statistics stay as trained
        assert all(torch.equal(before[k], stats[k]) for k in before)
    if method in FINE_TUNING:  # train mode: the statistics follow the fine-tuning batches
        assert any(not torch.equal(before[k], stats[k]) for k in before)


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_runs_on_a_batchnorm_network(attack, runs):
    report = ok(runs[f"attack/{attack}"])
    assert report["status"] == "ok"
    values = list(numbers(report["metrics"]))
    assert values and all(np.isfinite(values)), report["metrics"]

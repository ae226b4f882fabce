"""Every method through the installed ``unlearn`` command, on every checkpoint kind it supports.

Kinds: a plain MLP on tabular blobs, a plain CNN on tiny images, a SISA
ensemble and a model trained with ``--track-updates``. The expensive
invocations run together in module fixtures; the tests read their results.
SISA is checked to be exact (affected constituents equal training them from
scratch without the records; untouched ones byte-identical), SalUn to leave
every weight outside its mask bit-identical.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, run_here, write_blobs, write_images
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.models.checkpoint import load_checkpoint
from unlearn_cli.models.sidecar import load_sidecar, sidecar_path
from unlearn_cli.models.ensemble import read_meta, unprefixed
from unlearn_cli.training.sisa import slice_positions, train_constituent
from unlearn_cli.training.loop import Recipe
from unlearn_cli.models.predict import load_predictor
from unlearn_cli.ops.digests import id_digest
from unlearn_cli.data.tensors import tensors

REPORT_KEYS = {"command", "version", "status", "inputs", "outputs", "config", "timings", "metrics"}
PLAIN_METHODS = ("retrain", "boundary-shrink", "boundary-expand", "salun", "neggrad", "finetune")
SHARDS, SLICES = 3, 3


def run_many(jobs: dict[str, list], quick: dict[str, list] | None = None) -> dict:
    """``jobs`` as parallel console-script runs; ``quick`` (bad input) in-process in this thread meanwhile."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, timeout=600) for name, args in jobs.items()}
        done = {name: run_here(*args) for name, args in (quick or {}).items()}
        return done | {name: f.result() for name, f in futures.items()}


def ok(proc) -> dict:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    return json.loads(proc.stdout)


def one_line_error(proc, *fragments: str) -> str:
    err = proc.stderr.decode(errors="replace").strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("unlearn ") and ": error: " in line, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def write_ids(path: Path, ids) -> Path:
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("methods")


@pytest.fixture(scope="module")
def data(work):
    blobs = write_blobs(work / "blobs", n=300, classes=3, name="blobs3")
    images = write_images(work / "images", n=160, classes=3)
    return {"blobs": blobs, "images": images}


@pytest.fixture(scope="module")
def originals(work, data):
    b, i = data["blobs"], data["images"]
    jobs = {
        "plain": ["train", b, "--out", work / "plain.safetensors", "--epochs", 30, "--quiet"],
        "cnn": ["train", i, "--arch", "cnn", "--epochs", 6, "--out", work / "cnn.safetensors", "--quiet"],
        "sisa": ["train", b, "--out", work / "sisa.safetensors", "--epochs", 12, "--sisa-shards", SHARDS,
                 "--sisa-slices", SLICES, "--json"],
        "tracked": ["train", b, "--out", work / "tracked.safetensors", "--epochs", 10, "--track-updates", "--json"],
    }
    runs = run_many(jobs)
    for proc in runs.values():
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return {name: work / f"{name}.safetensors" for name in jobs} | {
        "sisa_report": json.loads(runs["sisa"].stdout), "tracked_report": json.loads(runs["tracked"].stdout)}


def cluster_ids(manifest: Path, label: int, k: int) -> list[str]:
    """The k train records of class `label` nearest its first one: a small cluster."""
    ds = load_manifest(manifest)
    rows = ds.train_indices()
    rows = rows[ds.y[rows] == label]
    flat = ds.x[rows].reshape(len(rows), -1)
    order = np.argsort(((flat - flat[0]) ** 2).sum(1), kind="stable")
    return [ds.ids[r] for r in rows[order[:k]]]


@pytest.fixture(scope="module")
def sisa_ids(work, data, originals):
    """Records in shard 1 (slices >= 1) and shard 2 (slice 2 only); shard 0 untouched."""
    ckpt = load_checkpoint(originals["sisa"])
    _, _, assignment, _ = read_meta(ckpt)
    ds = load_manifest(data["blobs"])
    train = ds.train_indices()
    pick = [*np.flatnonzero((assignment[:, 0] == 1) & (assignment[:, 1] == 1))[:2],
            *np.flatnonzero((assignment[:, 0] == 1) & (assignment[:, 1] == 2))[:1],
            *np.flatnonzero((assignment[:, 0] == 2) & (assignment[:, 1] == 2))[:2]]
    return [ds.ids[train[p]] for p in pick]


@pytest.fixture(scope="module")
def forget_runs(work, data, originals, sisa_ids):
    blob_ids = write_ids(work / "blob.ids", cluster_ids(data["blobs"], 0, 12))
    image_ids = write_ids(work / "image.ids", cluster_ids(data["images"], 2, 8))
    sisa_file = write_ids(work / "sisa.ids", sisa_ids)
    jobs = {}
    for method in PLAIN_METHODS:
        jobs[f"mlp/{method}"] = ["forget", originals["plain"], blob_ids, "--method", method,
                                 "--out", work / f"mlp.{method}.safetensors", "--json"]
        jobs[f"cnn/{method}"] = ["forget", originals["cnn"], image_ids, "--method", method,
                                 "--out", work / f"cnn.{method}.safetensors", "--json"]
    jobs["sisa/sisa"] = ["forget", originals["sisa"], sisa_file, "--method", "sisa",
                         "--out", work / "sisa.sisa.safetensors", "--json"]
    jobs["sisa/retrain"] = ["forget", originals["sisa"], sisa_file, "--method", "retrain",
                            "--out", work / "sisa.retrain.safetensors", "--json"]
    jobs["tracked/amnesiac"] = ["forget", originals["tracked"], blob_ids, "--method", "amnesiac",
                                "--out", work / "tracked.amnesiac.safetensors", "--json"]
    jobs["tracked/salun"] = ["forget", originals["tracked"], blob_ids, "--method", "salun",
                             "--out", work / "tracked.salun.safetensors", "--json"]
    # Checkpoints a method cannot use: exit 2 with how to train one that works (in-process: no work to do).
    quick = {"err/amnesiac-on-plain": ["forget", originals["plain"], blob_ids, "--method", "amnesiac",
                                       "--out", work / "e1.safetensors"],
             "err/sisa-on-plain": ["forget", originals["plain"], blob_ids, "--method", "sisa",
                                   "--out", work / "e2.safetensors"]}
    # Concurrent runs writing into one folder would share (and wait on) the default ledger there.
    for name, args in (jobs | quick).items():
        args += ["--ledger", work / f"{name.replace('/', '.')}.ledger.jsonl"]
    return run_many(jobs, quick)


# -- every method, every kind ----------------------------------------------------------------


@pytest.mark.parametrize("job", [f"{k}/{m}" for k in ("mlp", "cnn") for m in PLAIN_METHODS]
                         + ["sisa/sisa", "sisa/retrain", "tracked/amnesiac", "tracked/salun"])
def test_method_runs_from_the_cli_and_reports_the_design_keys(job, forget_runs, originals, work):
    report = ok(forget_runs[job])
    assert REPORT_KEYS <= set(report)
    assert report["command"] == "forget" and report["status"] == "ok"
    assert report["config"]["method"] == job.split("/")[1]
    assert report["timings"]["method_s"] > 0 and report["timings"]["total_s"] >= report["timings"]["method_s"]
    for when in ("before", "after"):
        for split in ("test", "retain", "forget"):
            values = report["metrics"][when][split]
            assert 0.0 <= values["accuracy"] <= 1.0 and values["loss"] >= 0.0
    out = Path(report["outputs"]["checkpoint"]["path"])
    source = originals[{"mlp": "plain"}.get(job.split("/")[0], job.split("/")[0])]
    before, after = load_checkpoint(source), load_checkpoint(out)
    assert {k: tuple(v.shape) for k, v in after.state.items()} == {k: tuple(v.shape) for k, v in before.state.items()}
    assert after.meta["lineage"][-1]["method"] == job.split("/")[1]
    assert after.kind == before.kind


def test_methods_change_the_weights_and_salun_raises_the_forget_loss(forget_runs, originals):
    for job in [f"{k}/{m}" for k in ("mlp", "cnn") for m in PLAIN_METHODS]:
        report = ok(forget_runs[job])
        before = load_checkpoint(originals["plain" if job.startswith("mlp") else "cnn"])
        after = load_checkpoint(report["outputs"]["checkpoint"]["path"])
        assert any(not torch.equal(before.state[k], after.state[k]) for k in before.state), job
        if job == "mlp/salun":  # a well-fit model: random labels must raise the forget loss
            assert report["metrics"]["after"]["forget"]["loss"] > report["metrics"]["before"]["forget"]["loss"], job


def test_unusable_checkpoints_fail_with_exit_2_and_say_how_to_train_one(forget_runs):
    one_line_error(forget_runs["err/amnesiac-on-plain"], "--track-updates", "unlearn train")
    one_line_error(forget_runs["err/sisa-on-plain"], "--sisa-shards", "unlearn train")


def test_fine_tuning_methods_refuse_sisa_ensembles(originals, data, sisa_ids):
    from unlearn_cli.errors import BadInput
    from unlearn_cli.methods.base import Request
    from unlearn_cli.methods.registry import get

    ckpt = load_checkpoint(originals["sisa"])
    ds = load_manifest(data["blobs"])
    rows = np.sort(ds.index_of(sisa_ids))
    request = Request(ckpt, ds, rows, np.setdiff1d(ds.train_indices(), rows))
    for name in ("salun", "neggrad", "finetune", "boundary-shrink", "boundary-expand"):
        method = get(name)
        with pytest.raises(BadInput, match="'sisa' ensemble.*--method sisa"):
            method.forget(request, method.Config())


@pytest.mark.parametrize("args,message", [
    (["--sisa-slices", "3"], "--sisa-slices needs --sisa-shards"),
    (["--sisa-aggregate", "mean"], "--sisa-aggregate needs --sisa-shards"),
    (["--sisa-shards", "2", "--track-updates"], "alternatives"),
    (["--sisa-shards", "0"], "--sisa-shards must be >= 1"),
    (["--sisa-shards", "2", "--sisa-aggregate", "median"], "vote or mean"),
])
def test_train_refuses_inconsistent_sisa_options(args, message):
    from unlearn_cli.training.train import TrainVariant
    from unlearn_cli.errors import BadInput

    opts = {"--sisa-shards": None, "--sisa-slices": None, "--sisa-aggregate": None}
    it = iter(args)
    track = False
    for flag in it:
        if flag == "--track-updates":
            track = True
        else:
            value = next(it)
            opts[flag] = value if flag == "--sisa-aggregate" else int(value)
    with pytest.raises(BadInput, match=message):
        TrainVariant(opts["--sisa-shards"], opts["--sisa-slices"], opts["--sisa-aggregate"], track)


def test_other_methods_drop_a_stale_update_log(forget_runs):
    from unlearn_cli.errors import BadInput
    from unlearn_cli.forget.config import check_requirement
    from unlearn_cli.methods.registry import get

    after = load_checkpoint(ok(forget_runs["tracked/salun"])["outputs"]["checkpoint"]["path"])
    assert not after.meta.get("update_log")
    with pytest.raises(BadInput, match="--track-updates"):
        check_requirement(get("amnesiac"), after)


# -- SISA ---------------------------------------------------------------------------------------


def test_sisa_training_writes_the_layout_of_the_design(originals):
    report = originals["sisa_report"]
    ckpt = load_checkpoint(originals["sisa"])
    assert ckpt.kind == "sisa"
    sisa = ckpt.meta["sisa"]
    assert (sisa["shards"], sisa["slices"], sisa["aggregate"]) == (SHARDS, SLICES, "vote")
    assert len(sisa["assignment"]) == ckpt.dataset["n_train"] and sisa["removed"] == []
    assert all(any(k.startswith(f"shard{i}.") for k in ckpt.state) for i in range(SHARDS))
    side = Path(report["outputs"]["sidecar.sisa-slices"]["path"])
    assert side == sidecar_path(ckpt.path, ckpt.sha256, "sisa-slices")
    slices = load_sidecar(side, {"checkpoint": ckpt.sha256})
    for i in range(SHARDS):
        last = unprefixed(f"shard{i}.slice{SLICES - 1}.", slices)
        assert all(torch.equal(last[k], ckpt.state[f"shard{i}.{k}"]) for k in last)
    assert len(report["metrics"]["constituents"]) == SHARDS


def test_sisa_predictions_are_the_majority_vote(originals, data):
    ckpt = load_checkpoint(originals["sisa"])
    ds = load_manifest(data["blobs"])
    x, _ = tensors(ds, ds.test_indices())
    from unlearn_cli.models.registry import build

    votes = torch.zeros(len(x), ds.num_classes)
    for i in range(SHARDS):
        m = build(ckpt.arch)
        m.load_state_dict(unprefixed(f"shard{i}.", ckpt.state))
        votes += torch.nn.functional.one_hot(m.eval()(x).argmax(1), ds.num_classes)
    with torch.no_grad():
        assert torch.equal(load_predictor(ckpt)(x).argmax(1), votes.argmax(1))


def _scratch(ckpt, data, removed_positions, shard):
    """A constituent trained from scratch without the removed records (same seeds)."""
    ds = load_manifest(data["blobs"])
    x, y = tensors(ds, ds.train_indices())
    _, slices, assignment, _ = read_meta(ckpt)
    recipe = Recipe.from_dict(ckpt.training)
    pos = slice_positions(assignment, shard, slices, np.asarray(removed_positions))
    return train_constituent(x, y, pos, ckpt.arch, recipe, recipe.seed, shard)[-1]


def _positions(data, ids):
    ds = load_manifest(data["blobs"])
    return np.searchsorted(ds.train_indices(), ds.index_of(ids))


def test_sisa_forget_is_exact_and_leaves_other_shards_byte_identical(forget_runs, originals, data, sisa_ids):
    report = ok(forget_runs["sisa/sisa"])
    method = report["metrics"]["method"]
    assert method["shards_retrained"] == [1, 2] and method["untouched_shards"] == [0]
    assert {e["shard"]: e["slices_retrained"] for e in method["retrained"]} == {1: [1, 2], 2: [2]}
    assert all(e["resumed_from"] == "slice state" for e in method["retrained"])
    before = load_checkpoint(originals["sisa"])
    after = load_checkpoint(report["outputs"]["checkpoint"]["path"])
    for key, tensor in before.state.items():
        if key.startswith("shard0."):
            assert after.state[key].numpy().tobytes() == tensor.numpy().tobytes(), key
    removed = _positions(data, sisa_ids)
    sealed = after.meta["sisa"]  # removed records are stored as ID digests, not train positions
    assert "removed" not in sealed and sealed["removed_count"] == len(removed)
    assert sorted(sealed["removed_digests"]) == sorted(id_digest(str(i)) for i in sisa_ids)
    for shard in (1, 2):
        fresh = _scratch(before, data, removed, shard)
        got = unprefixed(f"shard{shard}.", after.state)
        assert all(torch.equal(fresh[k], got[k]) for k in fresh), shard
    # The new slice states came out as the output's sidecar: untouched slices copied, the rest new.
    side = load_sidecar(sidecar_path(after.path, after.sha256, "sisa-slices"), {"checkpoint": after.sha256})
    old = load_sidecar(sidecar_path(before.path, before.sha256, "sisa-slices"), {"checkpoint": before.sha256})
    assert side is not None and set(side) == set(old)
    assert all(torch.equal(side[k], old[k]) for k in old if k.startswith(("shard0.", "shard1.slice0.", "shard2.slice0.", "shard2.slice1.")))


def test_a_second_sisa_forget_uses_the_new_slice_states_and_stays_exact(forget_runs, originals, data, sisa_ids, work):
    first = load_checkpoint(ok(forget_runs["sisa/sisa"])["outputs"]["checkpoint"]["path"])
    _, _, assignment, _ = read_meta(first)
    ds = load_manifest(data["blobs"])
    p = int(np.flatnonzero((assignment[:, 0] == 0) & (assignment[:, 1] == 1))[0])
    ids = write_ids(work / "second.ids", [ds.ids[ds.train_indices()[p]]])
    report = ok(run_cli("forget", first.path, ids, "--method", "sisa", "--out", work / "second.safetensors", "--json",
                        "--ledger", work / "second.ledger.jsonl"))
    assert report["metrics"]["method"]["retrained"][0]["resumed_from"] == "slice state"
    assert report["metrics"]["method"]["shards_retrained"] == [0]
    second = load_checkpoint(work / "second.safetensors")
    removed = np.concatenate([_positions(data, sisa_ids), [p]])
    fresh = _scratch(first, data, removed, 0)
    assert all(torch.equal(fresh[k], second.state[f"shard0.{k}"]) for k in fresh)
    for key in first.state:
        if not key.startswith("shard0."):
            assert torch.equal(first.state[key], second.state[key])


def test_retrain_on_a_sisa_checkpoint_retrains_every_shard_from_scratch(forget_runs, originals, data, sisa_ids):
    report = ok(forget_runs["sisa/retrain"])
    assert report["metrics"]["method"]["shards_retrained"] == list(range(SHARDS))
    after = load_checkpoint(report["outputs"]["checkpoint"]["path"])
    sisa = load_checkpoint(ok(forget_runs["sisa/sisa"])["outputs"]["checkpoint"]["path"])
    assert all(torch.equal(after.state[k], sisa.state[k]) for k in after.state)  # both exact: the same model


# -- Amnesiac -------------------------------------------------------------------------------------


def test_amnesiac_reports_the_log_size_and_removed_batches(forget_runs, originals):
    report = ok(forget_runs["tracked/amnesiac"])
    m = report["metrics"]["method"]
    tracked = originals["tracked_report"]
    side = Path(tracked["outputs"]["sidecar.update-log"]["path"])
    assert m["sidecar_bytes"] == side.stat().st_size > 0
    assert 0 < m["batches_removed"] <= m["batches_total"] == load_checkpoint(originals["tracked"]).meta["update_log"]["steps"]
    out = load_checkpoint(report["outputs"]["checkpoint"]["path"])
    assert out.meta["update_log"]["removed_batches"] == m["batches_removed"]
    log = load_sidecar(sidecar_path(out.path, out.sha256, "update-log"), {"checkpoint": out.sha256})
    removed = log["removed"].numpy()
    assert int(removed.sum()) == m["batches_removed"]
    assert all(float(v[torch.from_numpy(removed)].abs().max()) == 0.0 for k, v in log.items() if k.startswith("delta."))


def test_amnesiac_again_on_the_same_records_removes_nothing_more(forget_runs, work):
    out = Path(ok(forget_runs["tracked/amnesiac"])["outputs"]["checkpoint"]["path"])
    report = ok(run_cli("forget", out, work / "blob.ids", "--method", "amnesiac",
                        "--out", work / "again.safetensors", "--json", "--ledger", work / "again.ledger.jsonl"))
    assert report["metrics"]["method"]["batches_removed"] == 0
    assert report["metrics"]["method"]["batches_removed_earlier"] > 0


# -- SalUn --------------------------------------------------------------------------------------


def test_salun_leaves_weights_outside_the_mask_bit_identical(forget_runs, originals, data, work):
    from unlearn_cli.methods.salun import saliency_mask

    before = load_checkpoint(originals["plain"])
    after = load_checkpoint(ok(forget_runs["mlp/salun"])["outputs"]["checkpoint"]["path"])
    ds = load_manifest(data["blobs"])
    ids = [line for line in (work / "blob.ids").read_text().splitlines() if line]
    x, y = tensors(ds, np.sort(ds.index_of(ids)))
    masks = saliency_mask(before.build_model(), x, y, 0.5)
    changed = 0
    for name, mask in masks.items():
        old, new = before.state[name], after.state[name]
        assert old[~mask].numpy().tobytes() == new[~mask].numpy().tobytes(), name
        changed += int((old[mask] != new[mask]).sum())
    assert changed > 0


def test_salun_forgets_at_least_as_much_as_retrain(forget_runs):
    salun = ok(forget_runs["mlp/salun"])["metrics"]["after"]["forget"]["accuracy"]
    retrain = ok(forget_runs["mlp/retrain"])["metrics"]["after"]["forget"]["accuracy"]
    assert salun < retrain + 0.05

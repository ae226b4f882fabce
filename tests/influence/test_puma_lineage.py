"""PUMA through the CLI: an honest refusal, earlier removals kept out of H and grad C, nightly runs stay warm."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import run_here

from unlearn_cli.models.checkpoint import load_checkpoint
from unlearn_cli.models.datasets import dataset_for


def _workspace(blobs_checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    src = Path(blobs_checkpoint).parent
    for name in ("manifest.yaml", "blobs.safetensors"):
        shutil.copy(src / name, tmp_path / name)
    shutil.copy(blobs_checkpoint, tmp_path / "model.safetensors")
    ids = dataset_for(load_checkpoint(tmp_path / "model.safetensors"), None).train_ids
    return tmp_path / "model.safetensors", ids


def _forget(ckpt: Path, ids: list[str], tmp_path: Path, name: str, *options: str, out: list[str] | None = None):
    request = tmp_path / f"{name}.txt"
    request.write_text("\n".join(ids) + "\n")
    return run_here("forget", ckpt, request, "--method", "puma", *options, *(out or ["--in-place"]),
                    "--ledger", tmp_path / "ledger.jsonl", "--json", "--quiet")


def test_a_request_that_cannot_keep_c_exits_3_and_writes_nothing(blobs_checkpoint, tmp_path):
    ckpt, ids = _workspace(blobs_checkpoint, tmp_path)
    before = ckpt.read_bytes()
    out = tmp_path / "out.safetensors"
    proc = _forget(ckpt, ids[:10], tmp_path, "r", "--set", "delta=0", "--set", "delta_mode=absolute",
                   "--set", "eta_min=1e4", "--set", "eta_max=1e4", out=["--out", str(out)])
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert "refused its own result" in err and "gets worse by" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and ckpt.read_bytes() == before


def test_a_second_request_leaves_the_first_requests_records_out(blobs_checkpoint, tmp_path):
    ckpt, ids = _workspace(blobs_checkpoint, tmp_path)
    n_train = len(ids)
    first = _forget(ckpt, ids[:12], tmp_path, "night1", "--set", "solver=exact")
    assert first.returncode == 0, first.stderr.decode()
    m1 = json.loads(first.stdout)["metrics"]["method"]
    assert m1["excluded_records"] == 0 and m1["curvature_records"] == n_train - 12  # the request itself left out
    second = _forget(ckpt, ids[12:20], tmp_path, "night2", "--set", "solver=exact")
    assert second.returncode == 0, second.stderr.decode()
    m2 = json.loads(second.stdout)["metrics"]["method"]
    # the first request's 12 records are in neither H nor grad C: excluded and counted
    assert m2["excluded_records"] == 12
    assert m2["curvature_records"] == n_train - 12 - 8
    assert m2["criterion_set"]["records"] <= n_train - 20


def test_a_cron_second_night_reuses_the_parents_curvature(blobs_checkpoint, tmp_path):
    ckpt, ids = _workspace(blobs_checkpoint, tmp_path)
    options = ("--set", "solver=ekfac", "--set", "damping=0.05")
    first = _forget(ckpt, ids[:6], tmp_path, "night1", *options)
    assert first.returncode == 0, first.stderr.decode()
    r1 = json.loads(first.stdout)
    assert r1["metrics"]["method"]["cache"]["hit"] is False
    second = _forget(ckpt, ids[6:12], tmp_path, "night2", *options)
    assert second.returncode == 0, second.stderr.decode()
    r2 = json.loads(second.stdout)
    cache = r2["metrics"]["method"]["cache"]
    assert cache["reused_from_parent"]["parent_sha256"] == r1["inputs"]["checkpoint"]["sha256"][:16]
    assert 0 < cache["reused_from_parent"]["removed_since_build"] <= 0.05
    # no cold build: the factors come from the sidecar, so the curvature phase is a load, not passes
    assert r2["timings"]["method.curvature_s"] < 0.5 * r1["timings"]["method.curvature_s"] + 0.05

"""The scale workload generator (issue #16): seeded, prefix-stable, a manifest `unlearn train` accepts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

from tests.conftest import run_here
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.data.workloads import WorkloadSpec, ensure_workload, main, make_tabular, write_workload
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.digests import file_sha256


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_ones():
    a, b = make_tabular(WorkloadSpec(n=400)), make_tabular(WorkloadSpec(n=400))
    other = make_tabular(WorkloadSpec(n=400, seed=1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["x"], other["x"])
    assert a["x"].shape == (400, 44) and a["x"].dtype == np.float32
    # every split row is in exactly one split; the classes are all present, none dominates
    masks = np.stack([a["train_mask"], a["test_mask"], a["validation_mask"]])
    assert (masks.sum(0) == 1).all()
    assert np.bincount(a["y"], minlength=4).min() > 400 * 0.1
    # categorical columns are one-hot: each group of levels sums to 1 per row
    assert np.allclose(a["x"][:, 24:27].sum(1), 1.0) and np.allclose(a["x"][:, 36:44].sum(1), 1.0)


def test_a_larger_set_starts_with_the_smaller_one():
    small, large = make_tabular(WorkloadSpec(n=300)), make_tabular(WorkloadSpec(n=1000))
    assert all(np.array_equal(small[k], large[k][:300]) for k in small)


def test_the_manifest_loads_with_its_sha256_and_is_reused_while_intact(tmp_path):
    spec = WorkloadSpec(n=600)
    manifest = write_workload(spec, tmp_path)
    raw = yaml.safe_load(manifest.read_text())
    data = tmp_path / raw["data"]["path"]
    assert raw["sha256"] == file_sha256(data)
    ds = load_manifest(manifest)
    assert ds.x.shape[0] == 600 and ds.train.sum() > 400 and ds.test.sum() > 30
    before = data.stat().st_mtime_ns
    assert ensure_workload(spec, tmp_path) == manifest and data.stat().st_mtime_ns == before
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")  # damaged: regenerated, same bytes as before
    ensure_workload(spec, tmp_path)
    assert file_sha256(data) == raw["sha256"]
    # another seed in the same folder does not pass for the cached set
    assert yaml.safe_load(ensure_workload(WorkloadSpec(n=600, seed=3), tmp_path / "s3").read_text())["sha256"] \
        != raw["sha256"]


def test_unlearn_train_accepts_the_manifest(tmp_path):
    manifest = write_workload(WorkloadSpec(n=500), tmp_path)
    proc = run_here("train", manifest, "--hidden", "16", "--epochs", "2", "--out", tmp_path / "m.safetensors",
                    "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["inputs"]["data"]["sha256"] == yaml.safe_load(manifest.read_text())["sha256"]


def test_the_module_entry_writes_and_refuses_a_bad_size(tmp_path, capsys):
    assert main(["--n", "200", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "manifest.yaml")
    assert main(["--n", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--n must be between" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")
    with pytest.raises(BadInput):
        WorkloadSpec(n=100, seed=-1).check()

"""calibrate publishes through forget's path: lineage entry, one ledger line, verified atomic write, locks.

Calibrate runs in-process (typer's CliRunner) with a fixed --eta, so a
checkpoint is always written and no grid search is paid for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from forget_fixtures import Result, Work, template, work  # noqa: F401  (fixtures)
from unlearn_cli.models.checkpoint import load_checkpoint
from unlearn_cli.ops.digests import file_sha256
from unlearn_cli.ops.ledger import read_ledger

FAST = ("--eta", "1e-3", "--baseline", "none", "--device", "cpu", "--json")


def calibrate(*args) -> Result:
    from typer.testing import CliRunner

    from unlearn_cli.cli.app import app

    result = CliRunner().invoke(app, ["calibrate", *map(str, args)], catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def test_calibrate_out_gets_a_lineage_entry_and_one_ledger_line(work: Work):
    out_dir = work.dir / "calibrated"
    out_dir.mkdir()
    out = out_dir / "model.cal.safetensors"
    res = calibrate(work.model, "--out", out, *FAST)
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    parent, cal = load_checkpoint(work.model), load_checkpoint(out)
    assert report["outputs"]["checkpoint"] == {"path": str(out), "sha256": file_sha256(out)}

    assert parent.meta["lineage"] == []
    (entry,) = cal.meta["lineage"]
    config = {k: v for k, v in report["config"].items() if k != "device"}
    assert entry["method"] == "calibrate" and entry["config"] == config
    assert entry["count"] == report["metrics"]["algorithm3"]["forget"] > 0
    assert entry["parent_sha256"] == parent.sha256
    assert entry["removed_ids_digest"] is None and entry["request_sha256"] is None
    (calibration,) = cal.meta["calibration"]
    assert calibration["method"] == "puma" and calibration["eta"] == report["metrics"]["eta"]
    # The manifest path is re-anchored at the output's folder, as forget does.
    assert (out_dir / cal.meta["dataset"]["manifest"]).resolve() == (work.dir / "manifest.yaml").resolve()

    ledger = out_dir / "unlearn-ledger.jsonl"  # forget's default: beside the output
    (line,) = work.ledger_lines(ledger)
    assert read_ledger(ledger).damaged == 0
    assert (line["command"], line["method"], line["status"]) == ("calibrate", "calibrate", "ok")
    assert line["config"] == config and line["seed"] == config["seed"]
    assert line["input"] == {"path": os.path.abspath(work.model), "sha256": parent.sha256}
    assert line["output"] == {"path": os.path.abspath(out), "sha256": cal.sha256}
    assert line["ids"]["removed"] == entry["count"] and line["removed_id_sha256"] == []
    assert report["outputs"]["ledger"] == {"path": str(ledger), "sha256": file_sha256(ledger),
                                           "run_id": line["run_id"]}
    # Published atomically: no temp file, journal or lock left beside it.
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.cal.safetensors", "unlearn-ledger.jsonl"]


def test_forget_after_calibrate_finds_the_step_in_the_ledger(work: Work):
    cal = work.dir / "model.calibrated.safetensors"  # the default output
    res = calibrate(work.model, *FAST)
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["outputs"]["checkpoint"]["path"] == str(cal)
    ids = work.ids_file("ids.txt", work.train_ids[:3])
    res = work.invoke(cal, ids, "--out", work.dir / "forgotten.safetensors", "--json")
    assert res.exit_code == 0, res.stderr
    assert "not in ledger" not in res.stderr
    calibrate_line, forget_line = work.ledger_lines()
    assert calibrate_line["command"] == "calibrate" and forget_line["command"] == "forget"
    assert forget_line["input"]["sha256"] == calibrate_line["output"]["sha256"]
    lineage = load_checkpoint(work.dir / "forgotten.safetensors").meta["lineage"]
    assert [e["method"] for e in lineage] == ["calibrate", "retrain"]


def test_calibrate_ledger_option_and_its_checks(work: Work, tmp_path: Path):
    elsewhere = tmp_path / "audit.jsonl"
    res = calibrate(work.model, "--ledger", elsewhere, *FAST)
    assert res.exit_code == 0, res.stderr
    assert [line["command"] for line in work.ledger_lines(elsewhere)] == ["calibrate"]
    assert not work.ledger.exists()
    never = tmp_path / "never.safetensors"
    for args, fragment in (
        (("--ledger", tmp_path / "missing" / "l.jsonl", "--out", never), "does not exist"),
        (("--ledger", tmp_path, "--out", never), "is a directory"),
        (("--wait", "-1", "--out", never), "--wait must be >= 0"),
        (("--out", tmp_path), "is a directory"),
    ):
        res = calibrate(work.model, *args, *FAST)
        assert res.exit_code == 2, (args, res.stderr)
        assert fragment in res.stderr, (args, res.stderr)
    assert not (tmp_path / "never.safetensors").exists()


#: The settings as calibrate reports them: publishing reads holdout and seed.
CONFIG = {"holdout": 0.2, "k": None, "eta": 1e-3, "seed": 0}


def fake_result(state: dict) -> SimpleNamespace:
    """The parts of a CalibrationResult that publishing reads."""
    metrics = {"n": 10, "accuracy": 0.9, "ece": 0.1, "nll": 0.3, "brier": 0.2}
    return SimpleNamespace(
        state=state,
        metrics={"test": {"before": metrics, "puma": metrics}, "held_out": {"before": {"ece": 0.2},
                                                                            "puma": {"ece": 0.1}}},
        info={"forget": 4, "eta": 1e-3, "k": 6, "engine": {"solver": "cholesky", "damping": 1e-3},
              "over_confident": 3, "over_uncertain": 2, "other_noise": 1})


def test_published_weights_are_the_bytes_save_checkpoint_writes(work: Work, tmp_path: Path):
    from safetensors.torch import load_file

    from unlearn_cli.forget.calibrated import publish_calibrated
    from unlearn_cli.forget.targets import plan_calibrate_targets
    from unlearn_cli.models.checkpoint import save_checkpoint
    from unlearn_cli.models.datasets import open_checkpoint

    ckpt, dataset = open_checkpoint(work.model, None)
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in ckpt.state.items()}
    targets = plan_calibrate_targets(work.model, None, None, 0.0)
    outputs = publish_calibrated(targets, ckpt, dataset, fake_result(state), CONFIG, wait=0.0,
                                 warn=pytest.fail)
    reference = tmp_path / "reference.safetensors"
    save_checkpoint(reference, state, ckpt.meta)  # how calibrate wrote its weights before publishing like forget
    published, expected = load_file(str(targets.out)), load_file(str(reference))
    assert published.keys() == expected.keys()
    for name, tensor in expected.items():
        assert published[name].dtype == tensor.dtype
        assert published[name].numpy().tobytes() == tensor.numpy().tobytes(), name
    assert outputs["checkpoint"]["sha256"] == file_sha256(targets.out)


def test_a_held_lock_is_exit_4_and_nothing_is_written(work: Work):
    from unlearn_cli.errors import LockHeld
    from unlearn_cli.forget.calibrated import publish_calibrated
    from unlearn_cli.forget.targets import plan_calibrate_targets
    from unlearn_cli.models.datasets import open_checkpoint
    from unlearn_cli.ops.locking import hold_locks, lock_path_for

    ckpt, dataset = open_checkpoint(work.model, None)
    targets = plan_calibrate_targets(work.model, None, None, 0.0)
    with hold_locks([lock_path_for(targets.ledger)]):
        with pytest.raises(LockHeld, match="another unlearn run"):
            publish_calibrated(targets, ckpt, dataset, fake_result(ckpt.state), CONFIG, wait=0.0,
                               warn=pytest.fail)
    assert not targets.out.exists() and not targets.ledger.exists()
    assert LockHeld.exit_code == 4

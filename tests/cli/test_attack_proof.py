"""``unlearn attack`` proves what it can: its power on the original, intervals, a verdict, plots.

Driven in-process (``run_here``: the real app, no new interpreter) with the
loss attack, which trains nothing. Models: the shipped moons model (it
generalises: the loss attack cannot tell its members apart), an MLP that
memorised random labels (``noise_fixtures``: it can), a model of the same data
that never saw the members, and an "unlearned" checkpoint whose lineage names
the memorising model as its parent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, run_here

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attacks"))
from noise_fixtures import N_BLOCK, train_checkpoint, write_noise_data  # noqa: E402

MOONS = SAMPLES / "moons"
PROVES_NOTHING = "this attack cannot tell members from non-members on this model; its result proves nothing"


def err(proc) -> str:
    return proc.stderr.decode("utf-8", errors="replace")


def warnings_of(proc) -> list[str]:
    return [line for line in err(proc).splitlines() if ": warning: " in line]


def one_line_error(proc, code: int, *fragments: str) -> str:
    text = err(proc)
    assert proc.returncode == code, (proc.returncode, text)
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if ": warning: " not in line]
    assert len(lines) == 1 and lines[0].startswith("unlearn attack: error: "), text
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Noise data set; overfit, untrained and 'unlearned' (lineage parent: overfit) checkpoints; ids files."""
    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.models.checkpoint import load_checkpoint, save_checkpoint

    root = tmp_path_factory.mktemp("proof")
    dataset = load_manifest(write_noise_data(root))
    overfit = load_checkpoint(train_checkpoint(dataset, dataset.train_indices(), root / "overfit.safetensors"))
    untrained = train_checkpoint(dataset, np.arange(2 * N_BLOCK, 3 * N_BLOCK), root / "untrained.safetensors")
    step = {"method": "retrain", "config": {}, "count": 100, "parent_sha256": overfit.sha256}
    never = load_checkpoint(untrained)
    save_checkpoint(root / "unlearned.safetensors", never.state, {**never.meta, "lineage": [step]})
    orphan = root / "orphan"
    orphan.mkdir()
    save_checkpoint(root / "orphan.safetensors", never.state,
                    {**never.meta, "lineage": [{**step, "parent_sha256": "f" * 64}]})
    ids = root / "ids.txt"
    ids.write_text("\n".join(dataset.train_ids[:100]) + "\n")
    moons_ids = root / "moons-ids.txt"
    moons = load_manifest(MOONS / "manifest.yaml")
    moons_ids.write_text("\n".join(moons.train_ids[::4][:100]) + "\n")
    return {"root": root, "overfit": root / "overfit.safetensors", "untrained": untrained,
            "unlearned": root / "unlearned.safetensors", "orphan": root / "orphan.safetensors",
            "ids": ids, "moons_ids": moons_ids}


def attack_json(*args, code: int = 0):
    proc = run_here("attack", *args, "--attack", "loss", "--json")
    assert proc.returncode == code, err(proc)
    return proc, json.loads(proc.stdout)


def test_power_warning_on_a_model_that_generalises(world) -> None:
    proc, report = attack_json(MOONS / "model.safetensors", "--ids", world["moons_ids"])
    power = report["metrics"]["loss"]["power"]
    print("moons loss-attack power:", power)
    assert power["proves_nothing"] is True and power["source"] == "self"
    assert power["ci"][0] <= 0.5 <= power["ci"][1]
    hits = [w for w in warnings_of(proc) if PROVES_NOTHING in w]
    assert len(hits) == 1, err(proc)
    assert report["warnings"] == [hits[0].split(": warning: ", 1)[1]]
    entry = report["metrics"]["loss"]
    assert entry["bootstrap"]["resamples"] == 1000 and entry["bootstrap"]["level"] == 0.95
    for key in ("auc_ci", "tpr_at_1pct_fpr_ci", "tpr_at_0.1pct_fpr_ci"):
        lo, hi = entry[key]
        assert lo <= entry[key[:-3]] <= hi
    for split in ("forget", "retain", "test"):
        assert len(entry[split]["member_rate_ci"]) == 2


def test_no_power_warning_on_an_overfitted_model(world) -> None:
    proc, report = attack_json(world["overfit"], "--ids", world["ids"])
    power = report["metrics"]["loss"]["power"]
    print("overfit loss-attack power:", power)
    assert power["proves_nothing"] is False and power["ci"][0] > 0.5
    assert PROVES_NOTHING not in err(proc)


def test_the_lineage_parent_is_found_and_attacked_side_by_side(world) -> None:
    proc, report = attack_json(world["unlearned"], "--ids", world["ids"])
    entry = report["metrics"]["loss"]
    assert report["config"]["original"] == "original"
    assert report["inputs"]["original"]["path"].endswith("overfit.safetensors")
    assert entry["power"]["source"] == "original" and "overfit.safetensors" in entry["power"]["note"]
    assert entry["power"]["proves_nothing"] is False
    assert entry["original"]["auc"] >= 0.7 and abs(entry["auc"] - 0.5) <= 0.15
    assert PROVES_NOTHING not in err(proc)
    # A parent that is nowhere to be found: the power is read off the retain records, and said so.
    _, orphan = attack_json(world["orphan"], "--ids", world["ids"])
    assert orphan["config"]["original"] == "none" and "original" not in orphan["metrics"]["loss"]
    assert orphan["metrics"]["loss"]["power"]["source"] == "retain"
    assert "pass --original" in orphan["metrics"]["loss"]["power"]["note"]
    # --original names it explicitly.
    _, explicit = attack_json(world["orphan"], "--ids", world["ids"], "--original", world["overfit"])
    assert explicit["metrics"]["loss"]["power"]["source"] == "original"
    assert explicit["metrics"]["loss"]["original"]["auc"] == entry["original"]["auc"]


def test_verdict_and_max_gap_gate(world) -> None:
    ckpt, ids = world["overfit"], world["ids"]
    proc = run_here("attack", ckpt, "--ids", ids, "--attack", "loss", "--reference", world["untrained"],
                    "--max-gap", "0.1", "--report", world["root"] / "gap.json")
    line = one_line_error(proc, 3, "loss attack: gap to the reference is not within --max-gap 0.1",
                          "forget-vs-test AUC +")
    print(line)
    verdict = json.loads((world["root"] / "gap.json").read_text())["metrics"]["loss"]["verdict"]
    assert verdict["indistinguishable"] is False
    assert verdict["metrics"]["auc"]["verdict"] == "more-member-like"
    lo, hi = verdict["metrics"]["auc"]["gap_ci"]
    assert 0.1 < lo <= verdict["metrics"]["auc"]["gap"] <= hi
    # Against itself every gap is exactly 0: indistinguishable, and even --max-gap 0 passes.
    same = run_here("attack", ckpt, "--ids", ids, "--attack", "loss", "--reference", ckpt, "--max-gap", "0",
                    "--json")
    assert same.returncode == 0, err(same)
    verdict = json.loads(same.stdout)["metrics"]["loss"]["verdict"]
    assert verdict["indistinguishable"] is True
    assert {m["verdict"] for m in verdict["metrics"].values()} == {"indistinguishable"}
    assert "unlearn attack: gate passed: every gap's 95% interval is within --max-gap 0" in err(same)
    one_line_error(run_here("attack", ckpt, "--ids", ids, "--attack", "loss", "--max-gap", "0.1"), 2,
                   "--max-gap compares with a retrained model: pass --reference CKPT")
    one_line_error(run_here("attack", ckpt, "--ids", ids, "--attack", "loss", "--reference", ckpt,
                            "--max-gap", "1.5"), 2, "--max-gap must be in [0, 1]")


def test_plot_writes_valid_pngs_and_the_curves_data(world, monkeypatch) -> None:
    import matplotlib.image

    plots = world["root"] / "plots"
    args = ["attack", world["unlearned"], "--ids", world["ids"], "--attack", "loss",
            "--reference", world["untrained"], "--plot", plots]
    proc = run_here(*args, "--json")
    assert proc.returncode == 0, err(proc)
    report = json.loads(proc.stdout)
    for name in ("roc.png", "scores.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        assert matplotlib.image.imread(plots / name).ndim == 3
        assert report["outputs"][f"plot_{name[:-4]}"]["sha256"]
    curves = report["metrics"]["loss"]["roc"]
    assert set(curves) == {"target", "original", "reference"}
    for curve in curves.values():
        assert 2 <= len(curve["fpr"]) == len(curve["tpr"]) <= 200
        assert curve["fpr"][0] == 0 and curve["fpr"][-1] == 1 and curve["tpr"][-1] == 1
        assert all(a <= b for a, b in zip(curve["fpr"], curve["fpr"][1:]))
    # Existing plots are outputs like any other: refused without --force, replaced with it.
    one_line_error(run_here(*args), 2, "already exists; pass --force")
    assert run_here(*args, "--force", "--quiet").returncode == 0
    one_line_error(run_here(*args[:-1], world["ids"]), 2, "is a file; --plot takes a folder")
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # the plots extra is not installed
    one_line_error(run_here(*args[:-1], world["root"] / "elsewhere"), 2, "install unlearn[plots]")
    assert not (world["root"] / "elsewhere").exists()

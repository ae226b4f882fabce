"""The installed ``unlearn debug-labels`` and ``unlearn calibrate`` commands, end to end.

The expensive invocations (the moons evaluation protocol, calibrating an
over-confident model) start together in module fixtures as the real console
script; the bad-input cases run in-process meanwhile (``run_here``); the tests
read their results.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import SAMPLES, run_cli, run_here, unlearn_cmd, write_blobs

REPORT_KEYS = {"command", "version", "status", "inputs", "outputs", "config", "timings", "metrics"}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def report_of(proc) -> dict:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout)


def one_line_error(proc, command: str, *fragments: str) -> str:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"unlearn {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def without_matplotlib(*args, tmp: Path) -> subprocess.CompletedProcess:
    """Run the CLI with matplotlib made unimportable, whether or not it is installed."""
    shim = tmp / "no_matplotlib" / "matplotlib"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(shim.parent), COLUMNS="200")
    return subprocess.run(unlearn_cmd() + [str(a) for a in args], capture_output=True, env=env, timeout=300)


def over_confident_checkpoint(directory: Path) -> Path:
    """An MLP on overlapping blobs whose last layer is multiplied by 4: the same predictions, over-confident."""
    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.models.checkpoint import save_checkpoint
    from unlearn_cli.training.loop import default_recipe
    from unlearn_cli.models.registry import arch_spec_for
    from unlearn_cli.training.fit import base_meta, fit

    dataset = load_manifest(write_blobs(directory, n=1000, spread=2.0, seed=2, name="overlap"))
    spec = arch_spec_for(dataset, "mlp", None, None)
    recipe = default_recipe("mlp", epochs=20, seed=2)
    model, _ = fit(dataset, dataset.train_indices(), spec, recipe)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["layers.2.weight"] *= 4.0
    state["layers.2.bias"] *= 4.0
    out = directory / "over.safetensors"
    save_checkpoint(out, state, base_meta(spec, recipe, dataset, out))
    return out


def train_only_checkpoint(directory: Path, splits: str = "") -> Path:
    """A checkpoint of a manifest with only a train split (or ``splits``, YAML): by default nothing held out."""
    manifest = write_blobs(directory, n=120, seed=4, name="trainonly")
    text = manifest.read_text()
    start = text.index("splits:")
    end = text.index("normalize:")
    manifest.write_text(text[:start] + splits + text[end:])
    out = directory / "model.safetensors"
    proc = run_here("train", manifest, "--out", out, "--epochs", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, blobs_manifest, blobs_checkpoint):
    work = tmp_path_factory.mktemp("debugcal")
    over = over_confident_checkpoint(work / "over")
    sisa = work / "sisa.safetensors"
    from safetensors.torch import load_file

    from unlearn_cli.models.checkpoint import load_checkpoint, save_checkpoint

    plain = load_checkpoint(blobs_checkpoint)
    save_checkpoint(sisa, load_file(str(blobs_checkpoint)), {**plain.meta, "kind": "sisa"})
    moons = SAMPLES / "moons" / "manifest.yaml"
    jobs = {
        "evaluate": ["debug-labels", "--evaluate", moons, "--flip-rate", "0.1", "--seed", "0", "--ranker", "loo",
                     "--ranker", "puma", "--ranker", "puma-paper", "--ranker", "self-confidence", "--ranker",
                     "grad-dot", "--json", "--device", "cpu"],
        "calibrate": ["calibrate", over, "--out", work / "cal.safetensors", "--json", "--device", "cpu"],
        "calibrate-shipped": ["calibrate", SAMPLES / "german-credit" / "model.safetensors", "--out",
                              work / "german.safetensors", "--json", "--device", "cpu"],
        "rank": ["debug-labels", blobs_checkpoint, "--top", "5", "--out", work / "suspects.txt", "--json",
                 "--report", work / "rank.json", "--out-table", work / "issues.csv"],
        "calibrate-unchanged": ["calibrate", SAMPLES / "spiral" / "model.safetensors", "--out",
                                work / "spiral.safetensors", "--json", "--device", "cpu"],
        "rank-json-table": ["debug-labels", blobs_checkpoint, "--ranker", "puma", "--top", "5", "--out-table",
                            work / "issues.json", "--json"],
        "rank-table": ["debug-labels", blobs_checkpoint, "--ranker", "margin", "--top", "3"],
    }
    # Bad input (exit 2 before any work) runs in this process: no torch import per case.
    quick = {
        "neither": ["debug-labels"],
        "both": ["debug-labels", blobs_checkpoint, "--evaluate", moons],
        "bad-ranker": ["debug-labels", blobs_checkpoint, "--ranker", "shapley"],
        "two-rankers": ["debug-labels", blobs_checkpoint, "--ranker", "puma", "--ranker", "margin"],
        "top-zero": ["debug-labels", blobs_checkpoint, "--top", "0"],
        "flip-rate": ["debug-labels", "--evaluate", moons, "--flip-rate", "1.5"],
        "flip-without-evaluate": ["debug-labels", blobs_checkpoint, "--flip-rate", "0.2"],
        "sisa-puma": ["debug-labels", sisa, "--data", blobs_manifest, "--ranker", "puma"],
        "cal-baseline": ["calibrate", blobs_checkpoint, "--baseline", "platt"],
        "cal-same-out": ["calibrate", blobs_checkpoint, "--out", blobs_checkpoint],
        "cal-sisa": ["calibrate", sisa, "--data", blobs_manifest, "--out", work / "never.safetensors"],
        "cal-train-only": ["calibrate", train_only_checkpoint(work / "trainonly"), "--out", work / "never.safetensors"],
        "cal-validation": ["calibrate", train_only_checkpoint(work / "withval", "splits:\n  validation: {fraction: 0.25, "
                           "seed: 1}\n  test: {fraction: 0.25, seed: 0}\n"), "--out", work / "val.safetensors", "--json"],
        "table-suffix": ["debug-labels", blobs_checkpoint, "--out-table", work / "never.txt"],
        "table-evaluate": ["debug-labels", "--evaluate", moons, "--out-table", work / "never.csv"],
        "folds-range": ["debug-labels", blobs_checkpoint, "--ranker", "kfold", "--folds", "1"],
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, timeout=600) for name, args in jobs.items()}
        futures["no-plot"] = pool.submit(without_matplotlib, "calibrate", over, "--plot", work / "r.png",
                                         "--out", work / "never.safetensors", tmp=work)
        results = {name: run_here(*args) for name, args in quick.items()}
        results |= {name: f.result() for name, f in futures.items()}
    return {"work": work, "over": over, "over_sha": sha256(over), **results}


def test_loo_and_puma_find_most_flipped_moons_labels_in_the_first_fifth(runs):
    report = report_of(runs["evaluate"])
    assert REPORT_KEYS <= set(report) and report["command"] == "debug-labels" and report["status"] == "ok"
    m = report["metrics"]
    assert m["fractions"] == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert m["flipped"] == 40 and m["n_train"] == 400
    at = m["fractions"].index(0.2)
    loo = m["rankers"]["loo"]["found"]
    assert loo[at] >= 0.95 and loo[at] >= m["rankers"]["self-confidence"]["found"][at] - 0.03, m["rankers"]
    assert 20 <= m["rankers"]["loo"]["estimated_wrong"] <= 80  # 40 flipped: the count is of the right size
    puma = m["rankers"]["puma"]["found"]
    assert puma[at] >= 0.6, puma
    assert puma[at] >= m["random"][at] + 0.3, (puma, m["random"])
    assert puma[at] >= m["rankers"]["puma-paper"]["found"][at] - 1e-9  # orienting never loses here
    for name, values in m["rankers"].items():
        assert values["found"] == sorted(values["found"]), name  # a share found never shrinks
        assert all(f <= o + 1e-12 for f, o in zip(values["found"], m["optimal"]))
        assert values["seconds"] > 0
    assert set(m["rankers"]) == {"loo", "puma", "puma-paper", "self-confidence", "grad-dot"}
    assert m["model"]["test_accuracy"] > 0.9  # trained on corrupted labels, tested on clean ones


def test_calibrate_lowers_test_ece_of_an_over_confident_model(runs):
    report = report_of(runs["calibrate"])
    assert REPORT_KEYS <= set(report) and report["status"] == "ok"
    test = report["metrics"]["test"]
    assert test["puma"]["ece"] < test["before"]["ece"], test
    assert test["puma"]["accuracy"] >= test["before"]["accuracy"] - 0.01
    assert test["temperature"]["ece"] < test["before"]["ece"]
    assert report["metrics"]["temperature"] > 1.5  # the last layer was scaled by 4
    for column in ("before", "puma", "temperature"):
        for key in ("ece", "mce", "adaptive_ece", "classwise_ece", "nll", "brier", "accuracy"):
            assert isinstance(test[column][key], float), (column, key)
        assert len(test[column]["reliability"]) == 15
        assert set(test[column]["reliability"][0]) == {"lower", "upper", "confidence", "accuracy", "count"}
    a3 = report["metrics"]["algorithm3"]
    assert a3["forget"] == a3["over_confident"] + a3["other_noise"] > 0
    assert 0 < report["metrics"]["eta"] <= 0.1


def test_calibrate_writes_a_new_checkpoint_with_a_calibrate_lineage_entry(runs):
    from unlearn_cli.models.checkpoint import load_checkpoint

    report = report_of(runs["calibrate"])
    out = runs["work"] / "cal.safetensors"
    assert report["outputs"]["checkpoint"] == {"path": str(out), "sha256": sha256(out)}
    assert sha256(runs["over"]) == runs["over_sha"]  # the input is never modified
    cal = load_checkpoint(out)
    parent = load_checkpoint(runs["over"])
    # calibrate publishes through forget's path: the parent's lineage plus one entry of its own
    assert parent.meta["lineage"] == []
    (step,) = cal.meta["lineage"]
    assert step["method"] == "calibrate" and step["parent_sha256"] == parent.sha256
    (entry,) = cal.meta["calibration"]
    assert entry["method"] == "puma" and entry["criterion"] == "ece"
    assert entry["eta"] == report["metrics"]["eta"] and entry["parent_sha256"] == parent.sha256
    assert entry["held_out_ece"]["after"] < entry["held_out_ece"]["before"]


def test_debug_labels_writes_the_top_ids_for_forget(runs):
    from unlearn_cli.data.ids import read_ids

    report = report_of(runs["rank"])
    work = runs["work"]
    assert json.loads((work / "rank.json").read_text()) == report
    top = report["metrics"]["top"]
    assert [s["rank"] for s in top] == [1, 2, 3, 4, 5]
    assert set(top[0]) == {"rank", "id", "label", "predicted", "score", "confidence"}
    assert list(read_ids(work / "suspects.txt").ids) == [s["id"] for s in top]
    assert report["outputs"]["ids"]["sha256"] == sha256(work / "suspects.txt")
    assert report["metrics"]["ranker"] == "loo" and report["metrics"]["details"]["method"] == "kernel-loo"
    estimate = report["metrics"]["estimated_wrong"]
    assert estimate["probabilities"] == "out-of-sample" and 0 <= estimate["count"] <= report["metrics"]["n_train"]
    # the per-record table: every train record, most suspicious first, the issues the first `count` of them
    import csv

    rows = list(csv.DictReader((work / "issues.csv").open()))
    assert list(rows[0]) == ["rank", "id", "given_label", "predicted_label", "suggested_label", "score", "p_given",
                             "is_label_issue"]
    assert len(rows) == report["metrics"]["n_train"] and [r["id"] for r in rows[:5]] == [s["id"] for s in top]
    assert [r["is_label_issue"] for r in rows] == ["yes"] * estimate["count"] + ["no"] * (len(rows) - estimate["count"])
    assert report["outputs"]["table"]["sha256"] == sha256(work / "issues.csv")
    as_json = report_of(runs["rank-json-table"])
    records = json.loads((work / "issues.json").read_text())
    assert len(records) == as_json["metrics"]["n_train"] and isinstance(records[0]["is_label_issue"], bool)
    assert as_json["metrics"]["details"]["algorithm2"]["k"] == 5
    assert as_json["metrics"]["details"]["orientation"]["direction"]
    table = runs["rank-table"]
    assert table.returncode == 0 and b"by margin" in table.stdout


@pytest.mark.parametrize("name, fragments", [
    ("neither", ["CHECKPOINT", "--evaluate", "neither"]),
    ("both", ["not both"]),
    ("bad-ranker", ["unknown ranker 'shapley'", "self-confidence"]),
    ("two-rankers", ["only with --evaluate"]),
    ("top-zero", ["--top must be >= 1"]),
    ("flip-rate", ["--flip-rate"]),
    ("flip-without-evaluate", ["--flip-rate applies to --evaluate only"]),
    ("sisa-puma", ["ranker 'puma'", "self-confidence"]),
])
def test_debug_labels_bad_input_is_one_line_and_exit_2(runs, name, fragments):
    one_line_error(runs[name], "debug-labels", *fragments)


def test_debug_labels_table_and_folds_bad_input(runs):
    one_line_error(runs["table-suffix"], "debug-labels", "--out-table must end in .csv or .json")
    one_line_error(runs["table-evaluate"], "debug-labels", "--out-table", "does not apply to --evaluate")
    one_line_error(runs["folds-range"], "debug-labels", "--folds")
    assert not list(runs["work"].glob("never.*"))


def test_calibrate_fits_on_held_out_records_and_lowers_nll_and_ece_of_a_shipped_model(runs):
    report = report_of(runs["calibrate-shipped"])
    split = report["metrics"]["split"]
    assert split["fit"].startswith("seeded 50% of the test split") and split["fit_records"] == 100
    assert split["report_records"] == 100  # measured on test records the fit never saw
    test = report["metrics"]["test"]
    assert test["written"]["nll"] < test["before"]["nll"] - 0.1, test
    assert test["written"]["ece"] < test["before"]["ece"], test
    assert report["metrics"]["algorithm3"]["written_temperature"]["folded"] is True
    out = runs["work"] / "german.safetensors"
    assert report["outputs"]["checkpoint"]["sha256"] == sha256(out)  # --out is written


def test_calibrate_writes_a_named_out_even_when_nothing_helps(runs):
    # spiral's 60 fitting records are all classified correctly: no temperature minimum, and no eta helps
    report = report_of(runs["calibrate-unchanged"])
    assert report["status"] == "nothing-to-do" and "temperature" not in report["metrics"]["test"]
    out = runs["work"] / "spiral.safetensors"
    assert report["outputs"]["checkpoint"]["sha256"] == sha256(out)
    assert "holds the weights unchanged" in runs["calibrate-unchanged"].stderr.decode()


def test_calibrate_fits_on_the_validation_split_and_reports_on_the_test_split(runs):
    report = report_of(runs["cal-validation"])
    split = report["metrics"]["split"]
    assert split == {"fit": "validation split", "report": "test split", "fit_records": 30, "report_records": 30}
    assert report["metrics"]["test"]["before"]["n"] == 30


def test_calibrate_refuses_a_manifest_without_held_out_records(runs):
    one_line_error(runs["cal-train-only"], "calibrate", "only a train split", "add splits.validation or a test split")


def test_calibrate_bad_input_is_one_line_and_exit_2(runs):
    one_line_error(runs["cal-baseline"], "calibrate", "--baseline")
    one_line_error(runs["cal-same-out"], "calibrate", "refusing to overwrite")
    one_line_error(runs["cal-sisa"], "calibrate", "ensemble")
    line = one_line_error(runs["no-plot"], "calibrate", "matplotlib", "plots")
    assert "pip install -e '.[plots]' (from a source checkout)" in line and "unlearn-cli[plots]" in line
    assert not (runs["work"] / "never.safetensors").exists()
    assert not (runs["work"] / "r.png").exists()


def test_calibrate_plot_writes_a_png(runs, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "reliability.png"
    proc = run_cli("calibrate", runs["over"], "--out", tmp_path / "c.safetensors", "--plot", png, "--quiet",
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

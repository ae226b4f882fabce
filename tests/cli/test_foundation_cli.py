"""The installed ``unlearn`` command: train / evaluate / inspect / methods, end to end.

Every invocation is a real subprocess (``run_cli``). Each one pays for importing
torch, so independent invocations are started together by the module-scoped
fixtures below and the tests only look at their results.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, write_blobs
from unlearn_cli import __version__

REPORT_KEYS = {"command", "version", "status", "inputs", "outputs", "config", "timings", "metrics"}
SEED = 3
EPOCHS = 5


def run_many(jobs: dict[str, list]) -> dict[str, object]:
    """Run independent CLI invocations concurrently; name -> CompletedProcess."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, timeout=300) for name, args in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stderr_of(proc) -> str:
    return proc.stderr.decode("utf-8", errors="replace")


def stdout_of(proc) -> str:
    return proc.stdout.decode("utf-8", errors="replace")


def assert_ok(proc) -> None:
    assert proc.returncode == 0, stderr_of(proc)


def assert_one_line_error(proc, command: str, *fragments: str) -> str:
    err = stderr_of(proc)
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"unlearn {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- fixtures: the expensive invocations, run together -----------------------------------


TRAIN_ERROR_CASES = ["missing-manifest", "bad-yaml", "unknown-arch", "cuda-without-cuda", "cnn-on-blobs"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def train_runs(work, blobs_manifest, images_manifest):
    bad_yaml = work / "bad.yaml"
    bad_yaml.write_text("name: blobs\nnum_classes: [2\ndata: {path: x.safetensors\n")
    common = ["--epochs", EPOCHS, "--seed", SEED]
    jobs = {
        "a": ["train", blobs_manifest, "--out", work / "a.safetensors", *common,
              "--json", "--report", work / "a.report.json"],
        "b": ["train", blobs_manifest, "--out", work / "b.safetensors", *common, "--quiet"],
        "cnn": ["train", images_manifest, "--arch", "cnn", "--epochs", 2, "--out", work / "cnn.safetensors",
                "--json"],
        "missing-manifest": ["train", work / "no-such-manifest.yaml", "--out", work / "e1.safetensors"],
        "bad-yaml": ["train", bad_yaml, "--out", work / "e2.safetensors"],
        "unknown-arch": ["train", blobs_manifest, "--arch", "resnet152", "--out", work / "e3.safetensors"],
        "cnn-on-blobs": ["train", blobs_manifest, "--arch", "cnn", "--out", work / "e5.safetensors"],
    }
    if not torch.cuda.is_available():
        jobs["cuda-without-cuda"] = ["train", blobs_manifest, "--device", "cuda", "--out", work / "e4.safetensors"]
    return run_many(jobs)


@pytest.fixture(scope="module")
def report_a(train_runs):
    assert_ok(train_runs["a"])
    return json.loads(stdout_of(train_runs["a"]))


@pytest.fixture(scope="module")
def eval_runs(work, train_runs, report_a):
    ckpt = work / "a.safetensors"
    truncated = work / "truncated.safetensors"
    data = ckpt.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    # Same records and IDs, but a different test fraction: a different train split.
    other = write_blobs(work / "other-split", test_fraction=0.3)
    return run_many({
        "evaluate": ["evaluate", ckpt, "--json"],
        "inspect": ["inspect", ckpt, "--json"],
        "truncated": ["evaluate", truncated],
        "mismatch": ["evaluate", ckpt, "--data", other],
    })


# -- help and version (fast: no torch import) -----------------------------------------------


def test_help_lists_the_commands():
    proc = run_cli("--help")
    assert_ok(proc)
    out = stdout_of(proc)
    for command in ("train", "evaluate", "inspect", "methods"):
        assert command in out
    assert "Exit codes" in out


def test_train_help_lists_the_design_options():
    proc = run_cli("train", "--help")
    assert_ok(proc)
    out = stdout_of(proc)
    for option in ("--out", "--arch", "--hidden", "--epochs", "--lr", "--batch-size", "--weight-decay",
                   "--seed", "--report", "--json", "--quiet", "--device"):
        assert option in out, option


def test_version():
    proc = run_cli("--version")
    assert_ok(proc)
    assert stdout_of(proc).strip() == f"unlearn {__version__}"
    assert __version__ == dist_version("unlearn-cli")


# -- train ----------------------------------------------------------------------------------


def test_train_writes_a_checkpoint_and_a_json_report(work, report_a, blobs_manifest):
    ckpt = work / "a.safetensors"
    assert ckpt.is_file()
    assert set(report_a) >= REPORT_KEYS
    assert report_a["command"] == "train"
    assert report_a["version"] == __version__
    assert report_a["status"] == "ok"
    assert report_a["outputs"]["checkpoint"]["sha256"] == sha256(ckpt)
    assert Path(report_a["outputs"]["checkpoint"]["path"]).resolve() == ckpt.resolve()
    data_input = report_a["inputs"]["data"]
    assert data_input["sha256"] == sha256(data_input["path"])
    assert Path(report_a["inputs"]["manifest"]["path"]).resolve() == blobs_manifest.resolve()
    config = report_a["config"]
    assert config["arch"]["name"] == "mlp"
    assert config["training"]["seed"] == SEED
    assert config["training"]["epochs"] == EPOCHS
    timings = report_a["timings"]
    assert "total_s" in timings
    assert all(isinstance(v, (int, float)) and v >= 0 for v in timings.values())
    assert timings["total_s"] >= timings.get("train_s", 0)
    metrics = report_a["metrics"]
    for split in ("train", "test"):
        for key in ("accuracy", "loss", "ece"):
            assert isinstance(metrics[split][key], float), (split, key)
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
    assert metrics["train"]["n"] == 240 and metrics["test"]["n"] == 60
    # Well-separated blobs: five epochs are plenty.
    assert metrics["test"]["accuracy"] >= 0.9


def test_json_stdout_holds_only_the_report_and_report_file_matches(work, train_runs, report_a):
    out = stdout_of(train_runs["a"])
    assert json.loads(out) == report_a  # the whole of stdout parses: nothing else there
    assert json.loads((work / "a.report.json").read_text()) == report_a


def test_quiet_prints_nothing_on_stdout(work, train_runs):
    proc = train_runs["b"]
    assert_ok(proc)
    assert proc.stdout == b""
    assert (work / "b.safetensors").is_file()


def test_same_seed_gives_identical_tensors(work, train_runs):
    assert_ok(train_runs["a"])
    assert_ok(train_runs["b"])
    a = load_file(str(work / "a.safetensors"))
    b = load_file(str(work / "b.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_metadata_records_the_run(work, report_a, blobs_manifest):
    from unlearn_cli.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(work / "a.safetensors")
    assert {"format", "arch", "training", "dataset", "lineage"} <= set(ckpt.meta)
    assert ckpt.arch == report_a["config"]["arch"]
    assert ckpt.training == report_a["config"]["training"]
    assert ckpt.lineage == []
    assert ckpt.manifest_path() == blobs_manifest.resolve()
    assert ckpt.dataset["n_train"] == 240
    assert ckpt.dataset["data_sha256"] == report_a["inputs"]["data"]["sha256"]
    # Raw record IDs are never written into a checkpoint: only digests, no per-record lists.
    def lists(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from lists(v)
        elif isinstance(value, list):
            yield value
            for v in value:
                yield from lists(v)

    assert all(len(found) < 10 for found in lists(ckpt.meta))
    assert len(ckpt.dataset["train_ids_digest"]) == 64


def test_train_cnn_on_images(work, train_runs):
    proc = train_runs["cnn"]
    assert_ok(proc)
    report = json.loads(stdout_of(proc))
    assert report["config"]["arch"]["name"] == "cnn"
    assert report["config"]["arch"]["kwargs"]["input_shape"] == [1, 28, 28]
    assert report["config"]["arch"]["kwargs"]["num_classes"] == 3
    assert report["config"]["training"]["epochs"] == 2
    assert (work / "cnn.safetensors").is_file()
    assert report["metrics"]["parameters"] > 1000
    assert 0.0 <= report["metrics"]["test"]["accuracy"] <= 1.0


@pytest.mark.parametrize("case", TRAIN_ERROR_CASES)
def test_train_bad_input_is_exit_2_with_one_line(train_runs, work, case):
    if case not in train_runs:
        pytest.skip("CUDA is available here")
    fragments = {
        "missing-manifest": ["no-such-manifest.yaml", "not found"],
        "bad-yaml": ["bad.yaml", "YAML"],
        "unknown-arch": ["resnet152", "linear", "mlp", "cnn", "densenet"],
        "cuda-without-cuda": ["cuda"],
        "cnn-on-blobs": ["cnn", "input_shape"],
    }[case]
    assert_one_line_error(train_runs[case], "train", *fragments)
    assert train_runs[case].stdout == b""
    assert not list(work.glob("e[0-9].safetensors"))


# -- evaluate and inspect ------------------------------------------------------------------


def test_evaluate_reproduces_train_metrics(eval_runs, report_a):
    proc = eval_runs["evaluate"]
    assert_ok(proc)
    report = json.loads(stdout_of(proc))
    assert set(report) >= REPORT_KEYS
    assert report["command"] == "evaluate" and report["status"] == "ok"
    assert report["inputs"]["checkpoint"]["sha256"] == report_a["outputs"]["checkpoint"]["sha256"]
    for split in ("train", "test"):
        mine, trained = report["metrics"][split], report_a["metrics"][split]
        assert mine["n"] == trained["n"]
        assert mine["accuracy"] == trained["accuracy"]
        assert mine["loss"] == pytest.approx(trained["loss"], rel=1e-6)
        assert mine["ece"] == pytest.approx(trained["ece"], abs=1e-6)


def test_inspect_shows_arch_training_dataset_lineage(eval_runs, report_a):
    proc = eval_runs["inspect"]
    assert_ok(proc)
    report = json.loads(stdout_of(proc))
    assert report["command"] == "inspect" and report["status"] == "ok"
    m = report["metrics"]
    assert m["arch"] == report_a["config"]["arch"]
    assert m["training"] == report_a["config"]["training"]
    assert m["dataset"]["name"] == "blobs"
    assert m["dataset"]["n_train"] == 240
    assert m["dataset"]["manifest"].endswith("manifest.yaml")
    assert m["lineage"] == []
    assert m["format"] == 1
    assert m["parameters"] == report_a["metrics"]["parameters"] == 2 * 64 + 64 + 64 * 32 + 32 + 32 * 2 + 2
    assert report["inputs"]["checkpoint"]["sha256"] == report_a["outputs"]["checkpoint"]["sha256"]


def test_evaluate_truncated_checkpoint_is_exit_2(eval_runs):
    assert_one_line_error(eval_runs["truncated"], "evaluate", "truncated.safetensors")


def test_evaluate_with_a_different_train_split_is_exit_2(eval_runs):
    assert_one_line_error(eval_runs["mismatch"], "evaluate", "train split")


def test_inspect_missing_checkpoint_writes_a_failed_report(work):
    report = work / "inspect-missing.json"
    proc = run_cli("inspect", work / "missing.safetensors", "--report", report)
    assert_one_line_error(proc, "inspect", "missing.safetensors", "not found")
    data = json.loads(report.read_text())
    assert data["status"] == "failed"
    assert data["command"] == "inspect"
    assert "not found" in data["error"]


def test_failed_run_with_json_still_writes_the_report_file(work):
    report = work / "inspect-missing-json.json"
    proc = run_cli("inspect", work / "missing.safetensors", "--json", "--report", report)
    assert proc.returncode == 2
    assert json.loads(report.read_text())["status"] == "failed"


def test_report_into_missing_directory_is_exit_2(work, train_runs):
    assert_ok(train_runs["a"])
    proc = run_cli("inspect", work / "a.safetensors", "--report", work / "no-dir" / "r.json")
    assert_one_line_error(proc, "inspect", "no-dir")


def test_directory_as_checkpoint_is_one_line_exit_2(work):
    proc = run_cli("inspect", work)
    assert_one_line_error(proc, "inspect", "directory")

"""``unlearn mark`` and ``unlearn attack`` end to end, through the installed command.

Independent invocations of the console script start together (each pays for
importing torch) while quick ones (bad input, the gates, set-up) run in-process
meanwhile (``run_here``, the same app without a new interpreter); the tests
then read their exit codes, one-line errors and reports. The gates must
exit 3 with one line; bad input exits 2; a second attack run reuses every
cached shadow model.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SAMPLES, run_cli, run_here

RADIAL = SAMPLES / "radial" / "manifest.yaml"
# Small shokri settings: two shadows, few epochs; the set-up is the paper's, the sizes are not.
SMALL_SHOKRI = ["--set", "shadows=2", "--set", "shadow_epochs=5", "--set", "attack_epochs=10"]


def run_many(jobs: dict[str, list], quick: dict[str, list] | None = None) -> dict:
    """``jobs`` as parallel console-script runs; ``quick`` in-process in this thread meanwhile."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_cli, *args, timeout=300) for name, args in jobs.items()}
        done = {name: run_here(*args) for name, args in (quick or {}).items()}
        return done | {name: f.result() for name, f in futures.items()}


def err(proc) -> str:
    return proc.stderr.decode("utf-8", errors="replace")


def one_line_error(proc, command: str, code: int, *fragments: str) -> str:
    text = err(proc)
    assert proc.returncode == code, (proc.returncode, text)
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if ": warning: " not in line]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"unlearn {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    if not RADIAL.exists():
        pytest.skip("sample_models/radial/manifest.yaml is missing")
    work = tmp_path_factory.mktemp("mark")
    jobs = {
        "a": ["mark", RADIAL, "--strategy", "cluster", "--label", "0", "--seed", "5", "--out", work / "a.txt",
              "--json"],
        "b": ["mark", RADIAL, "--strategy", "cluster", "--label", "0", "--seed", "5", "--out", work / "b.txt",
              "--quiet"],
    }
    quick = {
        "bad": ["mark", RADIAL, "--strategy", "nope", "--out", work / "c.txt"],
        "ordered-no-ckpt": ["mark", RADIAL, "--strategy", "ordered", "--fraction", "0.1", "--out", work / "d.txt"],
    }
    return work, run_many(jobs, quick)


def test_mark_cluster_writes_one_stable_cluster_with_a_header(marked) -> None:
    from unlearn_cli.data.ids import read_ids
    from unlearn_cli.data.manifest import load_manifest

    work, procs = marked
    assert procs["a"].returncode == 0, err(procs["a"])
    assert procs["b"].returncode == 0, err(procs["b"])
    assert (work / "a.txt").read_bytes() == (work / "b.txt").read_bytes()   # same seed, same records
    lines = (work / "a.txt").read_text().splitlines()
    assert lines[0].startswith("# unlearn mark --strategy cluster label=0 clusters=8 pick=smallest seed=5")
    report = json.loads(procs["a"].stdout)
    ids = list(read_ids(work / "a.txt").ids)
    assert report["metrics"]["marked"] == len(ids) > 0
    assert report["metrics"]["per_class"] == {"0": len(ids), "1": 0}
    assert report["outputs"]["ids"]["sha256"]
    dataset = load_manifest(RADIAL)
    rows = dataset.index_of(ids)
    assert dataset.train[rows].all() and set(dataset.y[rows]) == {0}


def test_mark_bad_input_is_exit_2(marked) -> None:
    _, procs = marked
    one_line_error(procs["bad"], "mark", 2, "--strategy must be one of cluster, random, class, ordered")
    one_line_error(procs["ordered-no-ckpt"], "mark", 2, "needs --checkpoint")


@pytest.fixture(scope="module")
def attacked(blobs_manifest, blobs_checkpoint, tmp_path_factory):
    work = tmp_path_factory.mktemp("attack")
    ids = work / "forget.txt"
    proc = run_here("mark", blobs_manifest, "--strategy", "random", "--fraction", "0.1", "--seed", "1", "--out", ids,
                    "--quiet")
    assert proc.returncode == 0, err(proc)
    from unlearn_cli.data.manifest import load_manifest

    (work / "test-id.txt").write_text(load_manifest(blobs_manifest).test_ids[0] + "\n")
    cache = work / "cache"
    ckpt = blobs_checkpoint
    jobs = {
        "pass": ["attack", ckpt, "--ids", ids, "--attack", "loss", "--max-member-rate", "1", "--max-auc", "1",
                 "--json"],
        "first": ["attack", ckpt, "--ids", ids, *SMALL_SHOKRI, "--cache-dir", cache, "--json"],
    }
    quick = {
        "rate-gate": ["attack", ckpt, "--ids", ids, "--attack", "loss", "--max-member-rate", "0",
                      "--report", work / "gate.json"],
        "auc-gate": ["attack", ckpt, "--ids", ids, "--attack", "loss", "--max-auc", "0"],
        "bad-set": ["attack", ckpt, "--ids", ids, "--attack", "loss", "--set", "bogus=1"],
        "test-id": ["attack", ckpt, "--ids", work / "test-id.txt", "--attack", "loss"],
        "bad-gate": ["attack", ckpt, "--ids", ids, "--max-auc", "1.5"],
    }
    procs = run_many(jobs, quick)
    # Runs after the first: the cache is warm.
    procs["second"] = run_cli("attack", ckpt, "--ids", ids, *SMALL_SHOKRI, "--cache-dir", cache,
                              "--reference", ckpt, "--report", work / "second.json")
    return work, procs


def test_member_rate_gate_exits_3_with_one_line(attacked) -> None:
    work, procs = attacked
    line = one_line_error(procs["rate-gate"], "attack", 3, "loss attack: forget-set member rate",
                          "exceeds --max-member-rate 0")
    assert "AUC" not in line
    report = json.loads((work / "gate.json").read_text())
    assert report["status"] == "failed"
    assert report["metrics"]["loss"]["forget"]["member_rate"] > 0


def test_auc_gate_exits_3(attacked) -> None:
    _, procs = attacked
    one_line_error(procs["auc-gate"], "attack", 3, "forget-vs-test AUC", "exceeds --max-auc 0")


def test_passing_gates_exit_0_with_the_report_contract(attacked) -> None:
    _, procs = attacked
    assert procs["pass"].returncode == 0, err(procs["pass"])
    report = json.loads(procs["pass"].stdout)
    entry = report["metrics"]["loss"]
    for split in ("forget", "retain", "test"):
        assert isinstance(entry[split]["member_rate"], float)
    for key in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy"):
        assert isinstance(entry[key], (int, float))
    assert report["config"]["gates"] == {"max_member_rate": 1.0, "max_auc": 1.0, "max_gap": None}
    assert report["inputs"]["ids"]["sha256"]
    # Each passing gate says so in one line on stderr; stdout stays the report alone.
    lines = [line for line in err(procs["pass"]).splitlines() if ": warning: " not in line]
    rate, auc = entry["forget"]["member_rate"], entry["auc"]
    assert lines == [f"unlearn attack: gate passed: forget-set member rate {rate:.4f} <= --max-member-rate 1",
                     f"unlearn attack: gate passed: forget-vs-test AUC {auc:.4f} <= --max-auc 1"], lines


def test_bad_input_exits_2(attacked) -> None:
    _, procs = attacked
    one_line_error(procs["bad-set"], "attack", 2, "unknown setting bogus for attack 'loss'",
                   "valid: retain_sample, threshold")
    one_line_error(procs["test-id"], "attack", 2, "belongs to the test split")
    one_line_error(procs["bad-gate"], "attack", 2, "--max-auc must be in [0, 1]")


def test_second_run_reuses_every_model_and_shows_the_reference(attacked) -> None:
    work, procs = attacked
    assert procs["first"].returncode == 0, err(procs["first"])
    first = json.loads(procs["first"].stdout)["metrics"]["shokri"]
    assert first["models_trained"] == 3 and first["models_reused"] == 0   # 2 shadows + the attack MLP
    assert procs["second"].returncode == 0, err(procs["second"])
    report = json.loads((work / "second.json").read_text())
    second = report["metrics"]["shokri"]
    assert second["models_trained"] == 0 and second["models_reused"] == 3
    assert second["forget"]["member_rate"] == first["forget"]["member_rate"]
    reference = report["metrics"]["reference"]["shokri"]
    # The reference is the same checkpoint here, so its numbers match side by side.
    for split in ("forget", "retain", "test"):
        assert reference[split]["member_rate"] == second[split]["member_rate"]
    table = procs["second"].stdout.decode()
    for word in ("forget", "retain", "test", "member rate", "target", "reference", "TPR@0.1%"):
        assert word in table
    assert "…" not in table

"""``torchrun --nproc-per-node 2`` on CPU (gloo) against one process, on the moons sample.

One job runs train, forget puma, forget retrain, a SISA train and a SISA forget
(``driver.py``: the console script's app, the process group joined once); the
same commands run once more in a plain process. Tolerances, stated:

* data-parallel training and retraining (the batch split over the ranks, the
  gradients all-reduced): every weight within ``ATOL + RTOL * |w|`` of the
  one-process weight (the order of float additions differs; measured max
  difference 4e-7 after 260 Adam steps);
* PUMA on the shipped checkpoint (psi, gradients and C split by records; rank 0 writes), also with EK-FAC
  (its factor sums split by records and all-reduced): within the same tolerance;
* SISA (constituents spread over the ranks, gathered by broadcast): bit-identical.

Rank 1 runs under an audit hook that fails the job if it creates, writes,
renames or removes any file under the run's folder. A failure injected on one
rank (``UNLEARN_TEST_FAIL_RANK``) fails the run with nothing published: just before
publishing (the ranks vote; the job's last command), and in the middle of training
(rank 1 leaves while rank 0 waits in an all-reduce; the console script under torchrun).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MOONS = REPO / "sample_models" / "moons" / "manifest.yaml"
DRIVER = Path(__file__).with_name("driver.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
ATOL, RTOL = 1e-5, 1e-4
EPOCHS = "8"


def _gloo() -> str | None:
    try:
        import torch.distributed as tdist
    except ImportError:
        return "torch.distributed is not importable"
    if not tdist.is_available() or not tdist.is_gloo_available():
        return "this torch build has no torch.distributed gloo backend"
    if not TORCHRUN.exists():
        return f"no torchrun next to {sys.executable}"
    return None


pytestmark = pytest.mark.skipif(_gloo() is not None, reason=_gloo() or "")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(UNLEARN_DIST_TIMEOUT="60", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


def _torchrun(*args: str) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "--monitor-interval", "0.2", *args]


COMMANDS = [
    ["train", str(MOONS), "--out", "plain.safetensors", "--epochs", EPOCHS, "--report", "train.json"],
    ["forget", "shipped.safetensors", "ids.txt", "--method", "puma", "--data", str(MOONS),
     "--out", "puma.safetensors", "--report", "puma.json"],
    ["forget", "plain.safetensors", "ids.txt", "--method", "retrain", "--out", "retrain.safetensors",
     "--report", "retrain.json"],
    ["train", str(MOONS), "--out", "sisa.safetensors", "--epochs", EPOCHS, "--sisa-shards", "3",
     "--sisa-slices", "2", "--report", "sisa-train.json"],
    ["forget", "sisa.safetensors", "ids.txt", "--method", "sisa", "--out", "sisa.forgot.safetensors",
     "--report", "sisa-forget.json"],
    # EK-FAC factors: each rank sums its block of the records, then all-reduce
    ["forget", "shipped.safetensors", "ids.txt", "--method", "puma", "--set", "solver=ekfac", "--data", str(MOONS),
     "--out", "puma-ekfac.safetensors", "--report", "puma-ekfac.json"],
    # shadow models: independent jobs over the ranks (shadows 0 and 2 on rank 0, 1 on rank 1)
    ["attack", "puma.safetensors", "--ids", "ids.txt", "--attack", "shokri", "--set", "shadows=3",
     "--set", "shadow_epochs=4", "--set", "attack_epochs=20", "--data", str(MOONS), "--original", "shipped.safetensors",
     "--report", "attack.json"],
    # torchrun only: rank 1 fails just before publishing; every rank must fail and nothing be written.
    {"argv": ["forget", "plain.safetensors", "ids.txt", "--method", "retrain", "--out", "failed.safetensors"],
     "fault": "1:publish"},
]


def _prepare(folder: Path) -> Path:
    from unlearn_cli.data.manifest import load_manifest

    folder.mkdir(parents=True)
    ids = list(load_manifest(MOONS).train_ids)[5:45:4]
    (folder / "ids.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (folder / "commands.json").write_text(json.dumps(COMMANDS), encoding="utf-8")
    shutil.copy(MOONS.with_name("model.safetensors"), folder / "shipped.safetensors")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("torchrun")
    one, two = _prepare(base / "one"), _prepare(base / "two")
    for folder, cmd in ((one, [sys.executable, str(DRIVER), "commands.json"]),
                        (two, _torchrun(str(DRIVER), "commands.json"))):
        done = subprocess.run(cmd, cwd=folder, env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        (folder.parent / f"{folder.name}.stderr").write_text(done.stderr, encoding="utf-8")
    return {"one": one, "two": two}


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _close(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=ATOL, rtol=RTOL), (key, float((a[key] - b[key]).abs().max()))


def _identical(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_and_retrain_match_one_process(runs):
    for name in ("plain", "retrain"):
        _close(_tensors(runs["one"] / f"{name}.safetensors"), _tensors(runs["two"] / f"{name}.safetensors"))
    report = json.loads((runs["two"] / "train.json").read_text())
    split = report["distributed"]
    assert split["world"] == 2 and split["backend"] == "gloo"
    per_rank = [r["train_records"] for r in split["ranks"]]
    assert sum(per_rank) == int(EPOCHS) * 400 and abs(per_rank[0] - per_rank[1]) <= 400 // 32 + 1


def test_puma_matches_one_process(runs):
    # psi, the weighted gradients and C are split by records over the ranks and all-reduced: equal to one
    # process up to float rounding of the sums (same tolerance as training).
    _close(_tensors(runs["one"] / "puma.safetensors"), _tensors(runs["two"] / "puma.safetensors"))
    one = json.loads((runs["one"] / "puma.json").read_text())["metrics"]
    two = json.loads((runs["two"] / "puma.json").read_text())["metrics"]
    assert one["forgotten"] == two["forgotten"] == 10
    assert one["before"] == two["before"]
    assert one["method"]["eta"] == two["method"]["eta"] and one["method"]["steps"] == two["method"]["steps"]


def test_ekfac_factors_split_over_ranks_match_one_process(runs):
    # K-FAC factor sums and EK-FAC eigenvalue sums are split by records and all-reduced; each record's label
    # draw is seeded per record, so the ranks sum the same terms as one process, in another order.
    _close(_tensors(runs["one"] / "puma-ekfac.safetensors"), _tensors(runs["two"] / "puma-ekfac.safetensors"))
    report = json.loads((runs["two"] / "puma-ekfac.json").read_text())
    assert report["metrics"]["method"]["solver"] == "ekfac"
    per_rank = [r["curvature_records"] for r in report["distributed"]["ranks"]]
    assert per_rank[0] > 0 and per_rank[1] > 0 and abs(per_rank[0] - per_rank[1]) <= 1


def test_attack_shadow_models_are_jobs_over_the_ranks_and_match_one_process(runs):
    # Each shadow is trained whole by one rank, seeded as in one process: bit-identical. The attack model
    # on their outputs trains data-parallel, so the scores agree up to float rounding.
    two = json.loads((runs["two"] / "attack.json").read_text())
    assert [r["jobs"] for r in two["distributed"]["ranks"]] == [2, 1]
    cached = {folder: sorted((runs[folder] / ".unlearn-cache").rglob("*.safetensors")) for folder in runs}
    names = {folder: [p.name for p in paths] for folder, paths in cached.items()}
    assert names["one"] == names["two"] and len(names["two"]) == 4   # 3 shadows + the attack model, by rank 0
    shadows = [(a, b) for a, b in zip(cached["one"], cached["two"]) if "shadow" in a.name]
    assert len(shadows) == 3
    for a, b in shadows:
        _identical(_tensors(a), _tensors(b))
    one = json.loads((runs["one"] / "attack.json").read_text())["metrics"]["shokri"]
    for split in ("forget", "retain", "test"):
        for key in ("member_rate", "mean_score"):
            assert abs(one[split][key] - two["metrics"]["shokri"][split][key]) < 1e-5, (split, key)
    assert abs(one["auc"] - two["metrics"]["shokri"]["auc"]) < 1e-5


def test_sisa_is_bit_identical(runs):
    for name in ("sisa", "sisa.forgot"):
        _identical(_tensors(runs["one"] / f"{name}.safetensors"), _tensors(runs["two"] / f"{name}.safetensors"))
    sidecars = {folder: sorted(p.name.split(".", 1)[1] for p in runs[folder].glob("*.sisa-slices.safetensors"))
                for folder in runs}
    assert sidecars["one"] == sidecars["two"] and len(sidecars["two"]) == 2
    split = json.loads((runs["two"] / "sisa-train.json").read_text())["distributed"]
    assert [r["jobs"] for r in split["ranks"]] == [2, 1]  # shards 0 and 2 on rank 0, shard 1 on rank 1


def test_only_rank_zero_writes(runs):
    # Rank 1 ran under an audit hook (driver.py) that fails the job on any write under the folder;
    # the folders hold the same files (sidecar names carry each checkpoint's own sha256).
    def listing(folder: Path) -> list[str]:
        return sorted(p.name if ".sisa-slices." not in p.name else "*" + p.name[16:] for p in folder.iterdir())

    assert listing(runs["one"]) == listing(runs["two"])
    assert not [p for p in runs["two"].iterdir() if p.name.endswith((".tmp", ".journal"))]


def _failed_run(folder: Path, fault: str, *argv: str) -> subprocess.CompletedProcess:
    unlearn = Path(sys.executable).with_name("unlearn")
    return subprocess.run(_torchrun(str(unlearn), *argv), cwd=folder, env=_env(UNLEARN_TEST_FAIL_RANK=fault),
                          capture_output=True, text=True, timeout=300)


def _our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("unlearn ")]


def test_a_failing_rank_fails_train_with_nothing_written(tmp_path):
    done = _failed_run(tmp_path, "1:train", "train", str(MOONS), "--out", "x.safetensors", "--epochs", "2",
                       "--report", "r.json")
    assert done.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # the failure report, nothing else
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "failed"
    lines = _our_lines(done.stderr)
    assert any(line.startswith("unlearn train (rank 1): error: internal error: RuntimeError: injected fault")
               for line in lines), done.stderr[-2000:]
    assert all("Traceback" not in line for line in lines)


def test_a_failing_rank_fails_forget_before_publishing(runs):
    # The last command of the torchrun job: rank 1 raised just before publishing (driver.py checked that
    # every rank failed); no checkpoint, and the ledger holds the same lines as the one-process run's.
    assert not (runs["two"] / "failed.safetensors").exists()
    lines = {folder: (runs[folder] / "unlearn-ledger.jsonl").read_text().splitlines() for folder in runs}
    assert len(lines["one"]) == len(lines["two"]) == 4   # puma, retrain, sisa, puma (ekfac)
    ours = _our_lines((runs["two"].parent / "two.stderr").read_text())
    assert "unlearn forget: error: another process of this torchrun job failed before publishing; " \
           "nothing was written" in ours
    assert any(line.startswith("unlearn forget (rank 1): error: internal error: RuntimeError: injected fault")
               for line in ours)

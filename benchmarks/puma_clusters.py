#!/usr/bin/env python3
"""PUMA on the paper's cluster removal: preservation and whether the removal shows.

Issue #3's acceptance check, measured rather than asserted: on breast-cancer,
german-credit and mnist-5k, remove the paper's appendix-A marking (k-means with
8 clusters per class, the smallest cluster of each class, through `unlearn
mark --strategy cluster`), then compare

* test accuracy after PUMA with the original (target: at most 1 point lower);
* the removed records' mean true-class confidence after PUMA with that of a
  model retrained without them (target: PUMA's at or below retrain's).

Each option set given with --config is run; default settings first.

Usage:
    python benchmarks/puma_clusters.py
    python benchmarks/puma_clusters.py --datasets german-credit --config delta=0.05 --config damping=0.1
    python benchmarks/puma_clusters.py --name puma_clusters_sweep --config damping=1.0,eta=0.002
Writes benchmarks/results/<name>.{json,md} (default name: puma_clusters).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unlearn_cli.data.ids import read_ids  # noqa: E402
from unlearn_cli.models.checkpoint import load_checkpoint  # noqa: E402
from unlearn_cli.models.datasets import dataset_for  # noqa: E402
from unlearn_cli.data.tensors import tensors

RESULTS = REPO / "benchmarks" / "results"


def unlearn(*args: str) -> dict:
    exe = Path(sys.executable).parent / "unlearn"
    device = ["--device", "cpu"] if args[0] not in ("mark", "methods", "inspect") else []
    cmd = [str(exe) if exe.exists() else "unlearn", *args, "--json", "--quiet", *device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def confidence(ckpt_path: Path, rows: np.ndarray) -> float:
    ckpt = load_checkpoint(ckpt_path)
    dataset = dataset_for(ckpt, None)
    x, y = tensors(dataset, rows)
    with torch.no_grad():
        p = torch.softmax(ckpt.build_model()(x), 1)
    return float(p[torch.arange(len(y)), y].mean())


def run_dataset(name: str, configs: list[str], work: Path) -> dict:
    src = REPO / "sample_models" / name
    folder = work / name
    folder.mkdir()
    for p in src.iterdir():
        if p.is_file() and "curvature" not in p.name:
            shutil.copy(p, folder / p.name)
    ckpt = folder / "model.safetensors"
    ids = folder / "ids.txt"
    unlearn("mark", str(folder / "manifest.yaml"), "--strategy", "cluster", "--out", str(ids), "--force")
    dataset = dataset_for(load_checkpoint(ckpt), None)
    rows = dataset.index_of(read_ids(ids).ids)
    retrain = unlearn("forget", str(ckpt), str(ids), "--method", "retrain", "--out", str(folder / "retrain.safetensors"), "--force")
    out = {
        "forgotten": len(rows),
        "original": {"test_accuracy": retrain["metrics"]["before"]["test"]["accuracy"],
                     "forget_confidence": confidence(ckpt, rows)},
        "retrain": {"test_accuracy": retrain["metrics"]["after"]["test"]["accuracy"],
                    "forget_confidence": confidence(folder / "retrain.safetensors", rows),
                    "method_s": retrain["timings"]["method_s"]},
        "puma": [],
    }
    for config in configs:
        sets = [a for pair in config.split(",") if pair for a in ("--set", pair)]
        target = folder / "puma.safetensors"
        rep = unlearn("forget", str(ckpt), str(ids), "--method", "puma", "--out", str(target), "--force", *sets)
        test = rep["metrics"]["after"]["test"]["accuracy"]
        conf = confidence(target, rows)
        out["puma"].append({
            "config": config or "defaults", "test_accuracy": test, "forget_confidence": conf,
            "eta": rep["metrics"]["method"]["eta"], "method_s": rep["timings"]["method_s"],
            "preserved": test >= out["original"]["test_accuracy"] - 0.01 - 1e-9,
            "removal_shows": conf <= out["retrain"]["forget_confidence"],
        })
    return out


def render(result: dict) -> str:
    lines = ["# PUMA on the paper's cluster removal (appendix A marking)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}", "",
             "Targets (issue #3): test accuracy at most 1 point below the original, and the removed records' "
             "mean true-class confidence at or below the retrained model's.", "",
             "| data set | removed | model | settings | test acc | forget conf | eta | own time (s) | preserved | removal shows |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["datasets"].items():
        o, t = r["original"], r["retrain"]
        lines.append(f"| {name} | {r['forgotten']} | original | - | {o['test_accuracy']:.3f} | {o['forget_confidence']:.3f} | - | - | - | - |")
        lines.append(f"| {name} | {r['forgotten']} | retrain | - | {t['test_accuracy']:.3f} | {t['forget_confidence']:.3f} | - | {t['method_s']:.2f} | - | - |")
        for p in r["puma"]:
            lines.append(f"| {name} | {r['forgotten']} | puma | {p['config']} | {p['test_accuracy']:.3f} | "
                         f"{p['forget_confidence']:.3f} | {p['eta']:.3g} | {p['method_s']:.2f} | "
                         f"{'yes' if p['preserved'] else 'NO'} | {'yes' if p['removal_shows'] else 'NO'} |")
    lines += ["", "Paper (Table 1, PUMA row, their models and marking): breast cancer 96.45 -> 96.17, German 71.52 -> "
              "69.08, MNIST 97.60 -> 96.70 test accuracy after removing 20% (Ordered); not directly comparable."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="puma_clusters", help="results file stem in benchmarks/results/")
    parser.add_argument("--datasets", nargs="+", default=["breast-cancer", "german-credit", "mnist-5k"])
    parser.add_argument("--config", action="append", default=None,
                        help="comma-separated key=value PUMA options (repeatable); defaults always run first")
    args = parser.parse_args()
    configs = [""] + (args.config or [])
    result = {"command": "python " + shlex.join([str(Path(__file__).relative_to(REPO)), *sys.argv[1:]]),
              "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            result["datasets"][name] = run_dataset(name, configs, Path(tmp))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()

"""Mislabelled-record debugging benchmark: the PUMA paper's Figure 4 / Table 3 protocol.

For each data set and seed: flip 10% of the train labels (an in-memory copy),
train the manifest's default recipe (mlp; cnn for mnist-5k), rank the train
split with every ranker of ``unlearn debug-labels`` and record the share of
flipped records found after inspecting 5, 10, 20, 30 and 50% of the data, and
each ranker's seconds. One ablation rides along: puma with C = training
cross-entropy instead of the default soft error (see the sign note in
unlearn_cli/diagnostics/labels.py). The paper's Table 3 seconds are printed
beside ours, labelled as the paper's (their hardware, their data sizes).

Usage (from the repository root):
    .venv/bin/python benchmarks/debug_labels.py
    .venv/bin/python benchmarks/debug_labels.py --datasets moons spiral --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/debug_labels.py --skip influence@mnist-5k

Writes benchmarks/results/debug_labels.json and .md (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = ("moons", "spiral", "radial", "rectangular", "mnist-5k")
# Table 3 of Wu, Hashemi, Srinivasa (AAAI 2022), seconds, on the authors' machine.
PAPER_TABLE3 = {
    "moons": {"GShapley": 90.37, "NTK": 22.65, "SelfInfluence": 1562.93, "RSP": 17.14, "PUMA": 7.61},
    "spiral": {"GShapley": 78.47, "NTK": 19.91, "SelfInfluence": 1464.01, "RSP": 16.51, "PUMA": 7.44},
    "radial": {"GShapley": 82.99, "NTK": 21.60, "SelfInfluence": 1563.53, "RSP": 17.76, "PUMA": 7.76},
    "rectangular": {"GShapley": 78.04, "NTK": 20.23, "SelfInfluence": 1480.12, "RSP": 16.81, "PUMA": 7.29},
}
PAPER_NAME = {"puma": "PUMA", "grad-dot": "NTK", "influence": "SelfInfluence"}
ABLATION = "puma (C = cross-entropy)"


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_average_1min_at_start": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--mnist-seeds", nargs="+", type=int, default=[0],
                        help="seeds for mnist-5k (a cnn takes minutes to train on two cores)")
    parser.add_argument("--flip-rate", type=float, default=0.1)
    parser.add_argument("--skip", nargs="*", default=[], metavar="RANKER@DATASET",
                        help="leave a ranker out on one data set, e.g. influence@mnist-5k")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "debug_labels")
    args = parser.parse_args()

    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.diagnostics.labels import evaluate
    from unlearn_cli.diagnostics.rankers import RANKERS
    from unlearn_cli.ops.atomic import write_text
    from unlearn_cli.training.loop import resolve_device

    device = resolve_device(args.device)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = machine()
    results = {}
    for name in args.datasets:
        dataset = load_manifest(REPO / "sample_models" / name / "manifest.yaml")
        rankers = [r for r in RANKERS if f"{r}@{name}" not in args.skip]
        seeds = args.mnist_seeds if name == "mnist-5k" else args.seeds
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            run = evaluate(dataset, rankers, flip_rate=args.flip_rate, seed=seed, device=device,
                           variants={ABLATION: ("puma", {"criterion": "cross-entropy"})},
                           on_ranker=lambda r, n=name, s=seed: print(f"  {n} seed {s}: {r}", flush=True))
            run["wall_s"] = time.perf_counter() - t0
            runs.append(run)
            print(f"{name} seed {seed}: " + ", ".join(
                f"{r} {v['found'][2]:.2f}@20% {v['seconds']:.2f}s" for r, v in run["rankers"].items()), flush=True)
        results[name] = {"runs": runs, "summary": summarize(runs),
                         "skipped": [r for r in RANKERS if r not in rankers]}
    report = {
        "benchmark": "debug_labels",
        "protocol": "PUMA paper Figure 4 / Table 3: flip labels, train, rank, share of flips found vs share inspected",
        "command": " ".join(shlex.quote(a) for a in [sys.executable.replace(str(REPO) + "/", ""),
                                                     "benchmarks/debug_labels.py", *sys.argv[1:]]),
        "started": started,
        "machine": info,
        "flip_rate": args.flip_rate,
        "paper_table3_seconds": PAPER_TABLE3,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text(args.out.with_suffix(".md"), markdown(report))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


def summarize(runs: list[dict]) -> dict:
    out = {}
    for ranker in runs[0]["rankers"]:
        found = np.array([r["rankers"][ranker]["found"] for r in runs])
        seconds = np.array([r["rankers"][ranker]["seconds"] for r in runs])
        out[ranker] = {"found_mean": found.mean(0).tolist(), "found_std": found.std(0).tolist(),
                       "seconds_mean": float(seconds.mean()), "seconds_std": float(seconds.std())}
    out["optimal"] = {"found_mean": runs[0]["optimal"]}
    out["random"] = {"found_mean": runs[0]["random"]}
    out["train_s_mean"] = float(np.mean([r["train_s"] for r in runs]))
    out["test_accuracy_mean"] = float(np.mean([r["model"]["test_accuracy"] for r in runs]))
    out["flipped_fitted_mean"] = float(np.mean([r["model"]["flipped_fitted"] for r in runs]))
    return out


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Mislabelled-record debugging (PUMA paper, Figure 4 / Table 3 protocol)",
        "",
        f"{report['flip_rate']:.0%} of the train labels flipped to another class (in memory), the manifest's default "
        "recipe trained on them, then every train record ranked. Cells: share of the flipped records found after "
        "inspecting that share of the train split (mean ± std over seeds). Seconds: the ranker alone "
        "(curvature, iHVP and scores included; training excluded).",
        "",
        f"- command: `{report['command']}`",
        f"- started: {report['started']}",
        f"- machine: {m['cpu']} ({m['cpu_count']} cores; torch {m['torch']} with {m['torch_threads']} threads; "
        f"Python {m['python']}; {m['platform']}); 1-minute load average at start "
        f"{m['load_average_1min_at_start']:.1f}" + (" (other jobs shared the machine: seconds are upper bounds)"
                                                   if (m["load_average_1min_at_start"] or 0) > 1.0 else ""),
        "- paper seconds: Table 3 of Wu, Hashemi & Srinivasa (AAAI 2022), the authors' hardware and data sizes; "
        "NTK = our grad-dot, SelfInfluence = our influence; GShapley and RSP are not implemented here",
        "",
    ]
    for name, result in report["results"].items():
        s = result["summary"]
        runs = result["runs"]
        fractions = runs[0]["fractions"]
        lines += [f"## {name}", "",
                  f"{runs[0]['n_train']} train records, {runs[0]['flipped']} flipped; {runs[0]['arch']['name']} "
                  f"{runs[0]['recipe']['epochs']} epochs ({s['train_s_mean']:.1f} s to train); clean test accuracy "
                  f"{s['test_accuracy_mean']:.3f}; the model fits {s['flipped_fitted_mean']:.0%} of the flipped labels; "
                  f"seeds {[r['seed'] for r in runs]}.", ""]
        if result["skipped"]:
            lines += [f"Skipped here: {', '.join(result['skipped'])}.", ""]
        header = "| ranker | " + " | ".join(f"{f:.0%}" for f in fractions) + " | seconds (ours) | seconds (paper) |"
        lines += [header, "|" + "---|" * (len(fractions) + 3)]
        paper = report["paper_table3_seconds"].get(name, {})
        for ranker, values in s.items():
            if not isinstance(values, dict) or "found_mean" not in values:
                continue
            cells = [f"{mu:.2f} ± {sd:.2f}" for mu, sd in zip(values["found_mean"], values["found_std"])] \
                if "found_std" in values else [f"{mu:.2f}" for mu in values["found_mean"]]
            ours = f"{values['seconds_mean']:.2f} ± {values['seconds_std']:.2f}" if "seconds_mean" in values else ""
            theirs = paper.get(PAPER_NAME.get(ranker, ""), "")
            lines.append(f"| {ranker} | " + " | ".join(cells) + f" | {ours} | {theirs} |")
        if paper:
            lines += ["", "Paper's Table 3 seconds for methods not implemented here: "
                      + ", ".join(f"{k} {v}" for k, v in paper.items() if k not in PAPER_NAME.values()) + "."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

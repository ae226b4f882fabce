"""Mislabelled-record debugging benchmark: the PUMA paper's Figure 4 / Table 3 protocol, against cleanlab.

For each data set and seed: flip 10% of the train labels (an in-memory copy),
train the manifest's default recipe (mlp; cnn for mnist-5k), rank the train
split with every ranker of ``unlearn debug-labels`` (kfold excepted: cleanlab
is that recipe) and record the share of flipped records found after
inspecting 5, 10, 20, 30 and 50% of the data, and each ranker's seconds.
Beside them, cleanlab 2.9: ``cleanlab.rank.get_label_quality_scores(labels,
pred_probs, method="self_confidence")`` on 5-fold cross-validated predicted
probabilities (sklearn StratifiedKFold, shuffled with the seed) from models of
the same architecture and recipe; its seconds include training its 5 models
(ours exclude training the one model: debug-labels is handed it). The target:
the default ranker's share at 20% inspected >= cleanlab's - 0.03 on every set,
at <= 1/3 of cleanlab's seconds. The paper's Table 3 seconds are printed
beside ours, labelled as the paper's (their hardware, their data sizes).

Benchmark-only dependencies (cleanlab, scikit-learn, ...), pinned to the
project's torch:
    .venv/bin/pip install -c benchmarks/constraints.txt -r benchmarks/requirements.txt

Usage (from the repository root):
    nice .venv/bin/python benchmarks/debug_labels.py
    .venv/bin/python benchmarks/debug_labels.py --datasets moons spiral --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/debug_labels.py --skip influence@mnist-5k

Writes benchmarks/results/debug_labels.json and .md (atomically) after every
data set, so a long run leaves the sets it finished.
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

DATASETS = ("moons", "radial", "rectangular", "spiral", "breast-cancer", "german-credit", "mnist-5k")
DEFAULT_RANKER = "loo"
CLEANLAB = "cleanlab (5-fold CV)"
TARGET_GAP, TARGET_TIME = 0.03, 1 / 3
# Table 3 of Wu, Hashemi, Srinivasa (AAAI 2022), seconds, on the authors' machine.
PAPER_TABLE3 = {
    "moons": {"GShapley": 90.37, "NTK": 22.65, "SelfInfluence": 1562.93, "RSP": 17.14, "PUMA": 7.61},
    "spiral": {"GShapley": 78.47, "NTK": 19.91, "SelfInfluence": 1464.01, "RSP": 16.51, "PUMA": 7.44},
    "radial": {"GShapley": 82.99, "NTK": 21.60, "SelfInfluence": 1563.53, "RSP": 17.76, "PUMA": 7.76},
    "rectangular": {"GShapley": 78.04, "NTK": 20.23, "SelfInfluence": 1480.12, "RSP": 16.81, "PUMA": 7.29},
}
PAPER_NAME = {"puma-paper": "PUMA", "grad-dot": "NTK", "influence": "SelfInfluence"}


def cleanlab_run(dataset, flip_rate: float, seed: int, device, folds: int = 5) -> dict:
    """cleanlab's self-confidence on k-fold cross-validated probabilities of the same architecture and recipe."""
    import torch
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    from unlearn_cli.data.tensors import tensors
    from unlearn_cli.diagnostics.labels import default_arch, flip_labels, share_found
    from unlearn_cli.models.registry import arch_spec_for
    from unlearn_cli.training.fit import fit
    from unlearn_cli.training.loop import default_recipe

    corrupted, flipped = flip_labels(dataset, flip_rate, seed)
    train = corrupted.train_indices()
    labels = corrupted.y[train]
    arch = default_arch(dataset)
    spec, recipe = arch_spec_for(corrupted, arch, None, None), default_recipe(arch, seed=seed)
    t0 = time.perf_counter()
    probs = np.zeros((len(train), dataset.num_classes))
    for fit_pos, held_pos in StratifiedKFold(folds, shuffle=True, random_state=seed).split(train, labels):
        model, _ = fit(corrupted, train[fit_pos], spec, recipe, device=device)
        model.eval()
        x, _ = tensors(corrupted, train[held_pos], device)
        with torch.no_grad():
            probs[held_pos] = torch.softmax(model(x).double(), 1).cpu().numpy()
    scores = get_label_quality_scores(labels, probs, method="self_confidence")
    seconds = time.perf_counter() - t0
    ranked = train[np.argsort(scores, kind="stable")]
    return {"found": share_found(ranked, flipped), "seconds": seconds,
            "top_k_precision": float(np.isin(ranked[: len(flipped)], flipped).mean()),
            "estimated_wrong": int(num_label_issues(labels, probs)), "info": {"folds": folds}}


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
    parser.add_argument("--mnist-seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds for mnist-5k (a cnn takes minutes to train on two cores)")
    parser.add_argument("--no-cleanlab", action="store_true", help="leave cleanlab out (it is not installed)")
    parser.add_argument("--combine", nargs="+", type=Path, metavar="RUN.json",
                        help="merge the results of earlier runs (e.g. one per data set, run in parallel) into --out")
    parser.add_argument("--flip-rate", type=float, default=0.1)
    parser.add_argument("--skip", nargs="*", default=[], metavar="RANKER@DATASET",
                        help="leave a ranker out on one data set, e.g. influence@mnist-5k")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "debug_labels")
    args = parser.parse_args()

    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.diagnostics.labels import evaluate
    from unlearn_cli.diagnostics.rankers import RANKERS
    from unlearn_cli.training.loop import resolve_device

    if args.combine:
        combine(args)
        return
    device = resolve_device(args.device)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = machine()
    results = {}
    for name in args.datasets:
        dataset = load_manifest(REPO / "sample_models" / name / "manifest.yaml")
        rankers = [r for r, about in RANKERS.items() if f"{r}@{name}" not in args.skip and not about.costly]
        seeds = args.mnist_seeds if name == "mnist-5k" else args.seeds
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            run = evaluate(dataset, rankers, flip_rate=args.flip_rate, seed=seed, device=device,
                           on_ranker=lambda r, n=name, s=seed: print(f"  {n} seed {s}: {r}", flush=True))
            if not args.no_cleanlab:
                print(f"  {name} seed {seed}: {CLEANLAB}", flush=True)
                run["rankers"][CLEANLAB] = cleanlab_run(dataset, args.flip_rate, seed, device)
            run["wall_s"] = time.perf_counter() - t0
            runs.append(run)
            print(f"{name} seed {seed}: " + ", ".join(
                f"{r} {v['found'][2]:.2f}@20% {v['seconds']:.2f}s" for r, v in run["rankers"].items()), flush=True)
            results[name] = {"runs": runs, "summary": summarize(runs),
                             "skipped": [r for r in RANKERS if r not in rankers and not RANKERS[r].costly]}
            write(args, started, info, results)  # after every seed: a long run leaves what it finished


def write(args, started: str, info: dict, results: dict) -> None:
    from unlearn_cli.ops.atomic import write_text

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


def combine(args) -> None:
    """One report from several: results merged in DATASETS order, each run's command and machine kept."""
    from unlearn_cli.ops.atomic import write_text

    parts = [json.loads(path.read_text()) for path in args.combine]
    merged = {name: part["results"][name] for name in DATASETS for part in parts if name in part["results"]}
    report = {**parts[0], "command": " ; ".join(part["command"] for part in parts),
              "started": min(part["started"] for part in parts), "results": merged,
              "parts": [{"command": part["command"], "started": part["started"], "machine": part["machine"],
                         "sets": list(part["results"])} for part in parts]}
    write_text(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text(args.out.with_suffix(".md"), markdown(report))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


def summarize(runs: list[dict]) -> dict:
    out = {}
    for ranker in runs[0]["rankers"]:
        found = np.array([r["rankers"][ranker]["found"] for r in runs])
        seconds = np.array([r["rankers"][ranker]["seconds"] for r in runs])
        estimated = [r["rankers"][ranker].get("estimated_wrong") for r in runs]
        out[ranker] = {"found_mean": found.mean(0).tolist(), "found_std": found.std(0).tolist(),
                       "seconds_mean": float(seconds.mean()), "seconds_std": float(seconds.std()),
                       "estimated_wrong_mean": float(np.mean(estimated)) if None not in estimated else None}
    out["optimal"] = {"found_mean": runs[0]["optimal"]}
    out["random"] = {"found_mean": runs[0]["random"]}
    out["train_s_mean"] = float(np.mean([r["train_s"] for r in runs]))
    out["test_accuracy_mean"] = float(np.mean([r["model"]["test_accuracy"] for r in runs]))
    out["flipped_fitted_mean"] = float(np.mean([r["model"]["flipped_fitted"] for r in runs]))
    return out


def headline(report: dict) -> list[str]:
    """The target table: the default ranker against cleanlab at 20% inspected, and the time ratio."""
    lines = [f"## Target: {DEFAULT_RANKER} (default) against cleanlab, share found at 20% inspected", "",
             f"Met when {DEFAULT_RANKER} >= cleanlab - {TARGET_GAP} and its seconds <= {TARGET_TIME:.2f} x cleanlab's.",
             "", "| set | seeds | " + DEFAULT_RANKER + " | cleanlab | gap | puma | puma-paper | self-confidence | "
             f"{DEFAULT_RANKER} s | cleanlab s | time ratio | met |", "|" + "---|" * 12]
    for name, result in report["results"].items():
        s = result["summary"]
        if CLEANLAB not in s or DEFAULT_RANKER not in s:
            continue
        at = result["runs"][0]["fractions"].index(0.2)
        ours, theirs = s[DEFAULT_RANKER]["found_mean"][at], s[CLEANLAB]["found_mean"][at]
        ratio = s[DEFAULT_RANKER]["seconds_mean"] / s[CLEANLAB]["seconds_mean"]
        met = ours >= theirs - TARGET_GAP and ratio <= TARGET_TIME
        other = [f"{s[r]['found_mean'][at]:.2f}" if r in s else "" for r in ("puma", "puma-paper", "self-confidence")]
        lines.append(f"| {name} | {len(result['runs'])} | {ours:.2f} | {theirs:.2f} | {ours - theirs:+.2f} | "
                     + " | ".join(other) + f" | {s[DEFAULT_RANKER]['seconds_mean']:.2f} | "
                     f"{s[CLEANLAB]['seconds_mean']:.1f} | {ratio:.3f} | {'yes' if met else 'NO'} |")
    return lines + [""]


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
        f"- cleanlab: {CLEANLAB}, its seconds include training its 5 models; benchmark-only dependencies: "
        "`pip install -c benchmarks/constraints.txt -r benchmarks/requirements.txt`",
        "",
        *headline(report),
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
        skipped = [r for r in result["skipped"] if r != "kfold"]  # kfold is cleanlab's recipe: the cleanlab row
        if skipped:
            lines += [f"Skipped here: {', '.join(skipped)}.", ""]
        header = ("| ranker | " + " | ".join(f"{f:.0%}" for f in fractions)
                  + " | seconds (ours) | seconds (paper) | estimated wrong |")
        lines += [header, "|" + "---|" * (len(fractions) + 4)]
        paper = report["paper_table3_seconds"].get(name, {})
        for ranker, values in s.items():
            if not isinstance(values, dict) or "found_mean" not in values:
                continue
            cells = [f"{mu:.2f} ± {sd:.2f}" for mu, sd in zip(values["found_mean"], values["found_std"])] \
                if "found_std" in values else [f"{mu:.2f}" for mu in values["found_mean"]]
            ours = f"{values['seconds_mean']:.2f} ± {values['seconds_std']:.2f}" if "seconds_mean" in values else ""
            theirs = paper.get(PAPER_NAME.get(ranker, ""), "")
            estimated = values.get("estimated_wrong_mean")
            estimated = f"{estimated:.0f} (true {runs[0]['flipped']})" if estimated is not None else ""
            lines.append(f"| {ranker} | " + " | ".join(cells) + f" | {ours} | {theirs} | {estimated} |")
        if paper:
            lines += ["", "Paper's Table 3 seconds for methods not implemented here: "
                      + ", ".join(f"{k} {v}" for k, v in paper.items() if k not in PAPER_NAME.values()) + "."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Every unlearning method on every sample data set: accuracy after removal and own time.

For each data set, three originals are trained with the recorded default recipe
(`unlearn train`: a plain model, a SISA ensemble with ``--sisa-shards 5
--sisa-slices 4``, and a plain model with ``--track-updates``). Two requests are
marked (`unlearn mark`): one k-means cluster per class (the PUMA paper's
appendix A: k = 8, the smallest cluster) and a random 20% of the train split.
Each method then forgets each request from the original it needs (`unlearn
forget --json`); the table gives test / retain / forget accuracy after removal
(retrain is the reference every other method should match) and the method's own
time (report ``timings.method_s``) beside the whole command's (``total_s``,
which includes importing torch, loading data and evaluating before and after).

When ``unlearn mark`` is not installed, the requests are made here with numpy
and ``scipy.cluster.vq.kmeans2`` as in the paper's appendix-A listing.

Everything runs through the CLI, one command at a time (timings are
wall-clock and sensitive to other load on the machine: the load average is
recorded before and after). Results go to
``benchmarks/results/methods_table.{json,md}`` with the machine and the exact
command. Usage:

    python benchmarks/methods_table.py                                  # the small tabular/synthetic sets
    python benchmarks/methods_table.py --datasets breast-cancer --methods retrain,salun
    python benchmarks/methods_table.py --datasets mnist-5k --merge     # add the CNN set (slow on CPU)
    python benchmarks/methods_table.py --datasets mnist-5k/resnet --merge   # the ResNet with BatchNorm

A data set ``NAME/ARCH`` trains the originals with ``--arch ARCH`` on
``sample_models/NAME`` (default: ``cnn`` for mnist-5k, the MLP otherwise).

``--merge`` keeps the rows of other data sets already in the results file and
records each run's command, machine and load beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"
SMALL = ("moons", "radial", "rectangular", "spiral", "breast-cancer", "german-credit")
METHODS = ("retrain", "puma", "sisa", "amnesiac", "boundary-shrink", "boundary-expand", "salun", "neggrad",
           "finetune")
NEEDS = {"sisa": "sisa", "amnesiac": "update-log"}
IMAGE_SETS = ("mnist-5k", "mnist-5k/resnet")
MARKINGS = {"cluster": ["--strategy", "cluster"], "random-20%": ["--strategy", "random", "--fraction", "0.2"]}


def split_set(name: str) -> tuple[str, list[str]]:
    """``mnist-5k/resnet`` -> (``mnist-5k``, ``--arch resnet``); a bare name gets its default architecture."""
    base, _, arch = name.partition("/")
    if arch:
        return base, ["--arch", arch]
    return base, (["--arch", "cnn"] if base == "mnist-5k" else [])


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


class Runner:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.unlearn = shlex.split(args.unlearn)

    def cli(self, *argv: Any, timeout: float = 3600) -> tuple[int, dict[str, Any] | None, str]:
        device = ["--device", self.args.device] if str(argv[0]) not in ("mark", "methods", "inspect") else []
        cmd = self.unlearn + [str(a) for a in argv] + ["--json", *device]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)
        try:
            report = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            report = None
        err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        return proc.returncode, report, err

    def originals(self, name: str) -> dict[str, Path]:
        base, arch = split_set(name)
        manifest = SAMPLES / base / "manifest.yaml"
        plans = {"plain": [], "sisa": ["--sisa-shards", self.args.sisa_shards, "--sisa-slices", self.args.sisa_slices],
                 "update-log": ["--track-updates"]}
        out = {}
        for kind, extra in plans.items():
            path = self.work / name / f"{kind}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            rc, report, err = self.cli("train", manifest, "--out", path, "--force", "--seed", self.args.seed, *arch, *extra)
            if rc != 0:
                raise SystemExit(f"training the {kind} original of {name} failed: {err}")
            out[kind] = path
            print(f"  trained {kind}: test accuracy {report['metrics']['test']['accuracy']:.4f}", flush=True)
        return out

    def mark(self, name: str, marking: str) -> Path:
        manifest = SAMPLES / split_set(name)[0] / "manifest.yaml"
        path = self.work / name / f"{marking.replace('%', '')}.ids"
        rc, _, err = self.cli("mark", manifest, "--out", path, "--force", "--seed", self.args.seed, *MARKINGS[marking])
        if rc != 0:
            if "No such command" not in err:
                raise SystemExit(f"unlearn mark failed on {name}: {err}")
            fallback_mark(manifest, path, marking, self.args.seed)
        return path


def fallback_mark(manifest: Path, out: Path, marking: str, seed: int) -> None:
    """The paper's appendix-A marking without `unlearn mark`: numpy + scipy kmeans2."""
    import numpy as np
    from scipy.cluster.vq import kmeans2

    from unlearn_cli.data.manifest import load_manifest

    ds = load_manifest(manifest)
    train = ds.train_indices()
    if marking == "random-20%":
        rows = np.random.default_rng(seed).choice(train, size=round(0.2 * len(train)), replace=False)
    else:
        chosen = []
        for c in range(ds.num_classes):
            rows_c = train[ds.y[train] == c]
            feats = ds.x[rows_c].reshape(len(rows_c), -1).astype(np.float64)
            _, labels = kmeans2(feats, 8, iter=50, minit="++", seed=np.random.default_rng([seed, c]))
            sizes = np.bincount(labels, minlength=8)
            smallest = np.flatnonzero(sizes == sizes[sizes > 0].min())[0]
            chosen.append(rows_c[labels == smallest])
        rows = np.concatenate(chosen)
    from unlearn_cli.ops.atomic import write_text

    write_text(out, "".join(f"{ds.ids[i]}\n" for i in sorted(rows)))


def accuracies(metrics: dict[str, Any], when: str) -> dict[str, float | None]:
    return {split: metrics[when][split]["accuracy"] for split in ("test", "retain", "forget")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="methods-table-"))
    runner = Runner(args, work)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for name in args.datasets:
        print(f"{name}:", flush=True)
        originals = runner.originals(name)
        for marking in MARKINGS:
            ids = runner.mark(name, marking)
            count = sum(1 for line in ids.read_text().splitlines() if line.strip() and not line.startswith("#"))
            for method in args.methods:
                source = originals[NEEDS.get(method, "plain")]
                out = work / name / f"{marking.replace('%', '')}.{method}.safetensors"
                t0 = time.perf_counter()
                rc, report, err = runner.cli("forget", source, ids, "--method", method, "--out", out, "--force")
                wall = time.perf_counter() - t0
                row: dict[str, Any] = {"dataset": name, "marking": marking, "removed": count, "method": method,
                                       "original": NEEDS.get(method, "plain"), "exit_code": rc, "wall_s": wall}
                if rc == 0 and report is not None:
                    m = report["metrics"]
                    row.update(before=accuracies(m, "before"), after=accuracies(m, "after"),
                               method_s=report["timings"].get("method_s"), total_s=report["timings"].get("total_s"))
                    for key in ("batches_removed", "fraction_of_updates_removed", "shards_retrained",
                                "slice_steps_retrained", "neighbour_differs", "sidecar_bytes"):
                        if key in m.get("method", {}):
                            row[key] = m["method"][key]
                else:
                    row["error"] = err
                rows.append(row)
                after = row.get("after", {})
                print(f"  {marking:10s} {method:16s} rc={rc} test={after.get('test')} forget={after.get('forget')} "
                      f"method_s={row.get('method_s')}", flush=True)
    return {"rows": rows, "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "work": str(work)}


def fmt(x: Any, digits: int = 3) -> str:
    from unlearn_cli.cli.output import fmt as cli_fmt

    return cli_fmt(x, digits)


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Unlearning methods on the sample data sets", ""]
    for run_info in result["runs"]:
        lines += [
            f"Run on {', '.join(run_info['datasets'])}: `{run_info['command']}`  ",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in run_info["machine"].items()) + "  ",
            f"Load average (1/5/15 min) before: {', '.join(f'{v:.2f}' for v in run_info['load_average_before'])}; "
            f"after: {', '.join(f'{v:.2f}' for v in run_info['load_average_after'])}  ",
            f"Date: {run_info['date']}",
            "",
        ]
    lines += [
        "Accuracy after removal on the test split, the remaining train records (retain) and the removed ones "
        "(forget); the `original` row is the model before removal (plain original; SISA and update-log "
        "originals are listed under their methods' `before`). `method s` is the method's own time "
        "(`timings.method_s`), `total s` the whole `unlearn forget` command (`timings.total_s`). The target "
        "for every method is the retrain row: forget accuracy far below it is over-forgetting that a "
        "membership attack can notice, far above it is under-forgetting.",
        "",
    ]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in result["rows"]:
        by_key.setdefault((row["dataset"], row["marking"]), []).append(row)
    for (dataset, marking), rows in by_key.items():
        lines += [f"## {dataset}, {marking} ({rows[0]['removed']} records removed)", "",
                  "| method | test | retain | forget | method s | total s | notes |",
                  "|---|---|---|---|---|---|---|"]
        plain = next((r for r in rows if r.get("original") == "plain" and "before" in r), None)
        if plain:
            b = plain["before"]
            lines.append(f"| original | {fmt(b['test'])} | {fmt(b['retain'])} | {fmt(b['forget'])} | | | |")
        for r in rows:
            if "after" not in r:
                lines.append(f"| {r['method']} | - | - | - | - | - | failed (exit {r['exit_code']}): {r.get('error', '')} |")
                continue
            a = r["after"]
            notes = []
            if r["original"] != "plain":
                b = r["before"]
                notes.append(f"{r['original']} original before: test {fmt(b['test'])}, forget {fmt(b['forget'])}")
            if "batches_removed" in r:
                notes.append(f"{r['batches_removed']} batches ({fmt(r['fraction_of_updates_removed'])} of updates) removed")
            if "shards_retrained" in r:
                notes.append(f"shards retrained {r['shards_retrained']}, {r['slice_steps_retrained']} slice steps")
            if "neighbour_differs" in r:
                notes.append(f"FGSM moved {fmt(r['neighbour_differs'])} of labels")
            lines.append(f"| {r['method']} | {fmt(a['test'])} | {fmt(a['retain'])} | {fmt(a['forget'])} | "
                         f"{fmt(r['method_s'], 2)} | {fmt(r['total_s'], 2)} | {'; '.join(notes)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(SMALL), help="comma-separated sample data sets")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--unlearn", default=str(Path(sys.executable).parent / "unlearn"), help="the unlearn command")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sisa-shards", type=int, default=5)
    p.add_argument("--sisa-slices", type=int, default=4)
    p.add_argument("--work", help="folder for checkpoints and ids files (default: a temporary one)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "methods_table"),
                   help="results path without extension (.json and .md are written)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of other data sets already in the results file")
    args = p.parse_args()
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.methods = [m for m in args.methods.split(",") if m]
    out = Path(args.out)
    previous = {"rows": [], "runs": []}
    if args.merge and out.with_suffix(".json").exists():
        previous = json.loads(out.with_suffix(".json").read_text())
    result = run(args)
    this_run = {
        "datasets": args.datasets,
        "methods": args.methods,
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_before": result.pop("load_average_before"),
        "load_average_after": result.pop("load_average_after"),
        "work": result.pop("work"),
    }
    rows = [r for r in previous["rows"] if r["dataset"] not in args.datasets] + result["rows"]
    runs = [r for r in previous.get("runs", []) if set(r["datasets"]) - set(args.datasets)] + [this_run]
    covered = {r["dataset"] for r in rows}
    skipped = [d for d in (*SMALL, *IMAGE_SETS) if d not in covered]
    result = {
        "rows": rows,
        "runs": runs,
        "settings": {"sisa_shards": args.sisa_shards, "sisa_slices": args.sisa_slices, "seed": args.seed,
                     "device": args.device, "markings": MARKINGS},
        "notes": [
            "Every method runs with its documented defaults (`unlearn methods NAME`); originals use the "
            "default recipe of their architecture (MLP 64-32, Adam, 100 epochs; CNN for mnist-5k; "
            "`NAME/ARCH` rows: `--arch ARCH`, e.g. mnist-5k/resnet, the ResNet with BatchNorm).",
            f"SISA originals: {args.sisa_shards} shards x {args.sisa_slices} slices, majority vote.",
            *([f"Skipped data sets: {', '.join(skipped)} (run with --datasets NAME --merge)."] if skipped else []),
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    from unlearn_cli.ops.atomic import write_text

    write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_text(out.with_suffix(".md"), markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

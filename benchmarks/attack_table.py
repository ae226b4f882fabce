#!/usr/bin/env python3
"""The PUMA paper's Table 2 and Figure 5, re-run with the `unlearn` command.

Table 2 (membership attack after removal): for each sample data set and each
scenario (Ordered: records packed into few training batches / SISA shards,
``unlearn mark --strategy ordered``; Random: records anywhere,
``unlearn mark --strategy random``), each method forgets the marked records
and the shokri attack (the paper's appendix-A set-up) reports the share of
them it still calls training members, before (on the original checkpoint) and
after. LiRA's AUC and TPR at 1% FPR (forget set vs test split) are reported
beside it, before and after. The paper's numbers are written next to ours,
labelled as such: they come from other data sizes, models and marking sizes,
so they are a reference, not a target; the right target for any method is the
retrain row of the same run.

Figure 5 (PUMA's projection rate): ``--set eta=...`` swept over 1e-3..1;
test accuracy after removal and the forget-set member rate at each value.

Everything runs through the CLI (``unlearn train/mark/forget/attack``
subprocesses). Methods that ``unlearn methods --json`` does not list are
recorded as "not available" and skipped. Results go to
``benchmarks/results/attack_table.{json,md}`` with the machine and the exact
command. Usage:

    python benchmarks/attack_table.py                               # the full protocol (slow)
    python benchmarks/attack_table.py --datasets radial --eta-datasets radial
    python benchmarks/attack_table.py --unlearn ".venv/bin/unlearn" --device cpu
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"
DATASETS = ("radial", "rectangular", "german-credit", "breast-cancer", "mnist-5k")
# The paper's Table 2 methods plus the two later peers DESIGN.md compares with.
METHODS = ("retrain", "sisa", "amnesiac", "puma", "boundary-shrink", "boundary-expand", "salun")
SCENARIOS = ("ordered", "random")
ETAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
PAPER_NAMES = {"radial": "Radial", "rectangular": "Rectangular", "german-credit": "German",
               "breast-cancer": "Breast Cancer", "mnist-5k": "MNIST"}
PAPER_METHODS = {"retrain": "Retrain Model", "sisa": "SISA", "amnesiac": "Amnesiac ML", "puma": "PUMA"}

# PUMA (AAAI 2022) Table 2: % of removed data identified as training data, (before, after).
PAPER_TABLE2: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "Radial": {
        "ordered": {"retrain": (100.0, 100.0), "sisa": (100.0, 100.0), "amnesiac": (100.0, 0.0), "puma": (100.0, 5.31)},
        "random": {"retrain": (100.0, 52.36), "sisa": (100.0, 37.00), "amnesiac": (100.0, 50.00), "puma": (100.0, 1.18)},
    },
    "Rectangular": {
        "ordered": {"retrain": (100.0, 91.65), "sisa": (83.18, 83.18), "amnesiac": (100.0, 33.33), "puma": (100.0, 36.66)},
        "random": {"retrain": (100.0, 67.07), "sisa": (98.50, 94.00), "amnesiac": (100.0, 86.20), "puma": (100.0, 20.00)},
    },
    "German": {
        "ordered": {"retrain": (100.0, 77.12), "sisa": (100.0, 100.0), "amnesiac": (100.0, 0.0), "puma": (100.0, 3.42)},
        "random": {"retrain": (94.44, 84.44), "sisa": (100.0, 98.81), "amnesiac": (94.44, 93.33), "puma": (85.18, 2.22)},
    },
    "Breast Cancer": {
        "ordered": {"retrain": (100.0, 100.0), "sisa": (87.50, 87.50), "amnesiac": (100.0, 100.0), "puma": (100.0, 56.25)},
        "random": {"retrain": (100.0, 100.0), "sisa": (90.00, 73.75), "amnesiac": (100.0, 87.50), "puma": (100.0, 71.25)},
    },
    "MNIST": {
        "ordered": {"retrain": (100.0, 100.0), "sisa": (100.0, 100.0), "amnesiac": (100.0, 100.0), "puma": (100.0, 0.0)},
        "random": {"retrain": (100.0, 100.0), "sisa": (100.0, 100.0), "amnesiac": (100.0, 100.0), "puma": (100.0, 72.00)},
    },
}


class Runner:
    """Runs `unlearn` subprocesses, keeps the log of exact commands, never raises on failure."""

    def __init__(self, unlearn: list[str], device: str, verbose: bool):
        self.unlearn, self.device, self.verbose = unlearn, device, verbose
        self.log: list[dict[str, Any]] = []

    def __call__(self, *args: Any) -> tuple[int, dict[str, Any] | None, str]:
        device = ["--device", self.device] if str(args[0]) not in ("mark", "methods", "inspect") else []
        cmd = [*self.unlearn, *map(str, args), "--json", *device]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = round(time.perf_counter() - t0, 2)
        self.log.append({"command": shlex.join(cmd), "exit": proc.returncode, "seconds": seconds})
        if self.verbose:
            print(f"[{proc.returncode}] {seconds:7.1f}s  {shlex.join(cmd)}", file=sys.stderr)
        report = None
        try:
            report = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            pass
        lines = proc.stderr.strip().splitlines()
        return proc.returncode, report, (lines[-1] if lines else "")


def available_methods(run: Runner) -> dict[str, str]:
    """name -> requires, for every installed method."""
    code, report, _ = run("methods")
    if code != 0 or report is None:
        return {}
    found = {}
    for name in report["metrics"]["methods"]:
        code, info, _ = run("methods", name)
        if code == 0 and info is not None:
            found[name] = info["metrics"]["method"]["requires"]
    return found


def machine() -> dict[str, Any]:
    def ver(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": ver("torch"),
            "unlearn": ver("unlearn-cli")}


def pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


class Table2:
    def __init__(self, run: Runner, args: argparse.Namespace, methods: dict[str, str], work: Path):
        self.run, self.args, self.methods, self.work = run, args, methods, work
        self.attacks: dict[tuple[str, str, str], dict[str, Any] | str] = {}

    def attack(self, ckpt: Path, ids: Path, kind: str) -> dict[str, Any] | str:
        """shokri or lira numbers for (checkpoint, ids), or the failure line."""
        key = (str(ckpt), str(ids), kind)
        if key not in self.attacks:
            extra = ["--set", f"references={self.args.lira_references}"] if kind == "lira" else []
            code, report, err = self.run("attack", ckpt, "--ids", ids, "--attack", kind, "--seed", self.args.seed,
                                         *extra)
            self.attacks[key] = report["metrics"][kind] if code == 0 and report else f"attack failed: {err}"
        return self.attacks[key]

    def bases(self, name: str, manifest: Path) -> dict[str, Path | str]:
        """The original checkpoints each method needs: plain, sisa, update-log."""
        folder = self.work / name
        folder.mkdir(parents=True, exist_ok=True)
        needed = {req for m, req in self.methods.items() if m in self.args.methods}
        arch = ["--arch", self.args.mnist_arch] if name == "mnist-5k" else []
        plans = {"plain": [], "sisa": ["--sisa-shards", self.args.sisa_shards, "--sisa-slices", self.args.sisa_slices,
                                       "--sisa-aggregate", self.args.sisa_aggregate],
                 "update-log": ["--track-updates"]}
        out: dict[str, Path | str] = {}
        for req in sorted(needed | {"plain"}):
            ckpt = folder / f"original-{req}.safetensors"
            if not ckpt.exists():
                code, _, err = self.run("train", manifest, "--out", ckpt, "--force", "--seed", self.args.seed, *arch, *plans[req])
                if code != 0:
                    out[req] = f"train failed: {err}"
                    continue
            out[req] = ckpt
        return out

    def marking(self, name: str, manifest: Path, scenario: str, base: Path, req: str) -> Path | str:
        ids = self.work / name / f"marked-{scenario}-{req}.txt"
        if ids.exists():
            return ids
        if scenario == "ordered":
            extra = ["--strategy", "ordered", "--fraction", self.args.fraction, "--checkpoint", base]
        elif self.args.random_marking == "cluster":
            extra = ["--strategy", "cluster"]
        else:
            extra = ["--strategy", "random", "--fraction", self.args.fraction]
        code, _, err = self.run("mark", manifest, "--out", ids, "--force", "--seed", self.args.seed, *extra)
        return ids if code == 0 else f"mark failed: {err}"

    def rows(self, name: str) -> list[dict[str, Any]]:
        manifest = SAMPLES / name / "manifest.yaml"
        rows: list[dict[str, Any]] = []
        paper = PAPER_TABLE2.get(PAPER_NAMES.get(name, ""), {})
        bases = self.bases(name, manifest)
        for scenario in self.args.scenarios:
            for method in self.args.methods:
                row: dict[str, Any] = {"dataset": name, "scenario": scenario, "method": method}
                ref = paper.get(scenario, {}).get(method)
                row["paper_before"], row["paper_after"] = (ref if ref else (None, None))
                rows.append(row)
                if method not in self.methods:
                    row["status"] = "not available"
                    continue
                req = self.methods[method]
                base = bases.get(req)
                if not isinstance(base, Path):
                    row["status"] = base or f"no '{req}' checkpoint"
                    continue
                ids = self.marking(name, manifest, scenario, base, req)
                if not isinstance(ids, Path):
                    row["status"] = ids
                    continue
                out = self.work / name / f"{scenario}-{method}.safetensors"
                code, report, err = self.run("forget", base, ids, "--method", method, "--out", out, "--force",
                                             "--seed", self.args.seed)
                if code != 0:
                    row["status"] = f"forget failed: {err}"
                    continue
                after_acc = (report or {}).get("metrics", {}).get("after", {}).get("test", {}).get("accuracy")
                row.update(status="ok", test_accuracy_after=after_acc, marked=_count_ids(ids))
                for when, ckpt in (("before", base), ("after", out)):
                    shokri = self.attack(ckpt, ids, "shokri")
                    lira = self.attack(ckpt, ids, "lira")
                    row[f"member_rate_{when}"] = pct(shokri["forget"]["member_rate"]) if isinstance(shokri, dict) else shokri
                    if isinstance(lira, dict):
                        row[f"lira_auc_{when}"] = lira["auc"]
                        row[f"lira_tpr_at_1pct_fpr_{when}"] = lira["tpr_at_1pct_fpr"]
                    else:
                        row[f"lira_{when}"] = lira
        return rows


def _count_ids(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))


def figure5(run: Runner, args: argparse.Namespace, methods: dict[str, str], work: Path) -> list[dict[str, Any]]:
    """PUMA's eta sweep: test accuracy and forget-set member rate per value."""
    points: list[dict[str, Any]] = []
    if "puma" not in methods:
        return [{"status": "not available", "method": "puma"}]
    table = Table2(run, args, {"puma": methods["puma"]}, work)
    for name in args.eta_datasets:
        manifest = SAMPLES / name / "manifest.yaml"
        base = table.bases(name, manifest).get("plain")
        if not isinstance(base, Path):
            points.append({"dataset": name, "status": str(base)})
            continue
        ids = table.marking(name, manifest, "random", base, "plain")
        if not isinstance(ids, Path):
            points.append({"dataset": name, "status": ids})
            continue
        for eta in args.etas:
            out = work / name / f"eta-{eta:g}.safetensors"
            point: dict[str, Any] = {"dataset": name, "eta": eta}
            code, report, err = run("forget", base, ids, "--method", "puma", "--set", f"eta={eta:g}", "--out", out, "--force",
                                    "--seed", args.seed)
            if code != 0:
                point["status"] = f"forget failed: {err}"
            else:
                shokri = table.attack(out, ids, "shokri")
                point.update(status="ok",
                             test_accuracy=report["metrics"]["after"]["test"]["accuracy"],
                             member_rate=pct(shokri["forget"]["member_rate"]) if isinstance(shokri, dict) else shokri)
            points.append(point)
    return points


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Membership attack after removal (PUMA Table 2 protocol) and PUMA's eta (Figure 5)",
        "",
        f"Command: `{result['command']}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in result["machine"].items()),
        "",
        f"Settings: {json.dumps(result['settings'])}",
        "",
        "Member rate = % of the marked (forgotten) records the shokri attack (PUMA appendix A set-up) calls "
        "training members; lower is not automatically better: compare with the retrain row of the same run. "
        "**paper** columns are the PUMA paper's Table 2 (their data sizes, models and marking), shown for "
        "reference only. LiRA: forget set vs test split.",
        "",
        "| data set | scenario | method | marked | ours before | ours after | paper before | paper after "
        "| LiRA AUC before | LiRA AUC after | LiRA TPR@1%FPR after | test acc after | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["table2"]:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in (
            "dataset", "scenario", "method", "marked", "member_rate_before", "member_rate_after", "paper_before",
            "paper_after", "lira_auc_before", "lira_auc_after", "lira_tpr_at_1pct_fpr_after",
            "test_accuracy_after", "status")) + " |")
    lines += ["", "## Figure 5: PUMA's projection rate eta", "",
              "| data set | eta | test accuracy | forget member rate (%) | status |", "|---|---|---|---|---|"]
    for p in result["figure5"]:
        lines.append("| " + " | ".join(_fmt(p.get(k)) for k in ("dataset", "eta", "test_accuracy", "member_rate",
                                                                   "status")) + " |")
    if result["not_available"]:
        lines += ["", "Not available (not listed by `unlearn methods`): " + ", ".join(result["not_available"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated sample data sets")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="ordered,random")
    p.add_argument("--fraction", type=float, default=0.05,
                   help="share of the train split marked (the paper does not state Table 2's; 5%%)")
    p.add_argument("--random-marking", choices=("random", "cluster"), default="random",
                   help="Random scenario marking: uniform records, or the paper's k-means cluster (appendix A)")
    p.add_argument("--lira-references", type=int, default=16, help="LiRA reference models")
    p.add_argument("--sisa-shards", type=int, default=5, help="SISA shards of the SISA original")
    p.add_argument("--sisa-slices", type=int, default=4, help="SISA slices per shard")
    p.add_argument("--sisa-aggregate", choices=("vote", "mean"), default="mean",
                   help="SISA aggregate: mean softmax (default here: its outputs are probabilities like the "
                        "shadow models', so the attack reads them as it reads any model) or the paper's vote")
    p.add_argument("--mnist-arch", default="cnn", help="architecture for mnist-5k (the paper's is densenet)")
    p.add_argument("--eta-datasets", default="german-credit,mnist-5k",
                   help="data sets of the eta sweep (the paper's Figure 5 uses German Credit and MNIST)")
    p.add_argument("--etas", default=",".join(f"{e:g}" for e in ETAS), help="PUMA eta values")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--unlearn", default=None, help="the unlearn command (default: the one beside this Python)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "unlearn-attack-table",
                   help="checkpoints, ids files and the attack cache (outside the repository by default)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    p.add_argument("--quiet", action="store_true", help="do not echo each command")
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.methods = [m for m in args.methods.split(",") if m]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.eta_datasets = [d for d in args.eta_datasets.split(",") if d]
    args.etas = [float(e) for e in args.etas.split(",") if e]
    exe = args.unlearn or str(Path(sys.executable).with_name("unlearn"))
    run = Runner(shlex.split(exe), args.device, not args.quiet)
    t0 = time.perf_counter()
    methods = available_methods(run)
    args.work.mkdir(parents=True, exist_ok=True)
    table = Table2(run, args, methods, args.work)
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        rows += table.rows(name)
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(argv),
        "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "attack": "shokri (5 shadows, 9% of train each, 50 epochs, attack MLP 128-64); lira for AUC/TPR",
        "not_available": [m for m in args.methods if m not in methods],
        "table2": rows,
        "paper_table2": {ds: {sc: {m: {"before": b, "after": a} for m, (b, a) in by.items()}
                              for sc, by in scen.items()} for ds, scen in PAPER_TABLE2.items()},
        "figure5": figure5(run, args, methods, args.work),
        "seconds": round(time.perf_counter() - t0, 1),
        "commands": run.log,
    }
    from unlearn_cli.ops.atomic import write_text  # the package's one atomic writer (no torch import)

    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "attack_table.json", json.dumps(result, indent=2) + "\n")
    write_text(args.out / "attack_table.md", markdown(result))
    print(f"wrote {args.out / 'attack_table.json'} and {args.out / 'attack_table.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

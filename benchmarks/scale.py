#!/usr/bin/env python3
"""Cost of one deletion request against data set size, and speed on a busy machine (issue #16).

Part 1, scale: for each n (default 5k, 50k, 500k records of the seeded tabular
workload, ``unlearn_cli/data/workloads.py``; generated on demand into
``benchmarks/.cache/scale/``, reused while its sha256 matches), an MLP is
trained with ``benchmarks/recipes/scale-mlp.yaml`` (``--hidden 128,64``), once
plain and once as a 5-shard SISA ensemble, and one request of 100 random train
records is served by retrain, SISA, PUMA cold (curvature cache deleted first),
PUMA warm (cache present) and SalUn, in that order, repeated ``--reps`` times
(alternating: every method once per round); medians are reported. Each run is
one ``unlearn forget ... --json`` process; its own report gives
``timings.method_s`` (the method alone) and ``total_s``; the benchmark measures
the whole process (wall clock) and its peak RSS (``os.wait4``'s rusage of that
one child).

Part 2, threads: a mnist-5k CNN retrain (the shipped checkpoint, a 100-record
request) quiet and beside 1 and 2 competing CPU-bound processes (a Python busy
loop each), with the old thread setting (torch's default of one thread per
core, libgomp's default spin-waiting: ``UNLEARN_THREADS=2 GOMP_SPINCOUNT=300000``)
against the new default (``UNLEARN_THREADS=auto``, passive waits).

Usage:
    nice python benchmarks/scale.py                         # n = 5k, 50k, 500k; 3 rounds; threads part
    nice python benchmarks/scale.py --n 5000,50000 --reps 1 --skip-threads
Writes benchmarks/results/scale.{json,md} and scale.png (log-log cost against n).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_report import render, write_plot  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "benchmarks" / ".cache" / "scale"
RECIPE = REPO / "benchmarks" / "recipes" / "scale-mlp.yaml"
HIDDEN = "128,64"
MNIST = REPO / "sample_models" / "mnist-5k"
METHODS = ("retrain", "sisa", "puma_cold", "puma_warm", "salun")
#: Thread settings of part 2: the old default (torch's threads, libgomp's spinning) and the new one.
THREAD_SETTINGS = {"old": {"UNLEARN_THREADS": "2", "GOMP_SPINCOUNT": "300000"}, "new": {}}


def unlearn() -> list[str]:
    exe = Path(sys.executable).parent / "unlearn"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "unlearn_cli"]


class TimedOut(Exception):
    """A run cut at the timeout; ``peak_rss_mib`` is its peak RSS until then."""

    def __init__(self, message: str, peak_rss_mib: float):
        super().__init__(message)
        self.peak_rss_mib = peak_rss_mib


def measured(args: list[str], env: dict[str, str] | None = None,
             timeout: float | None = None) -> tuple[dict, float, float]:
    """Run ``unlearn ARGS --json``; return (report, wall seconds, peak RSS in MiB) of that one process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(unlearn() + args + ["--json", "--quiet", "--device", "cpu"], stdout=out, stderr=err,
                                env={**os.environ, **(env or {})})
        while True:  # wait4 on this one child: its own peak RSS, not the maximum over all children
            pid, raw, usage = os.wait4(proc.pid, os.WNOHANG if timeout else 0)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                usage = os.wait4(proc.pid, 0)[2]
                proc.returncode = -9
                raise TimedOut(f"unlearn {args[0]} ran past {timeout:.0f} s", usage.ru_maxrss / 1024)
            time.sleep(0.2)
        status = os.waitstatus_to_exitcode(raw)
        wall = time.perf_counter() - t0
        proc.returncode = status
        out.seek(0), err.seek(0)
        if proc.returncode == 3:  # a verification gate refused the result (PUMA's own check): still a timed run
            report = json.loads(out.read() or b"{}")
            report["refused"] = err.read().decode()[-500:].strip()
            return report, wall, usage.ru_maxrss / 1024
        if proc.returncode != 0:
            raise SystemExit(f"unlearn {' '.join(args)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        return json.loads(out.read()), wall, usage.ru_maxrss / 1024


def recipe_flags() -> list[str]:
    import yaml

    recipe = yaml.safe_load(RECIPE.read_text())
    flags = ["--hidden", HIDDEN]
    for key in ("optimizer", "lr", "epochs", "batch_size", "weight_decay", "seed"):
        flags += [f"--{key.replace('_', '-')}", str(recipe[key])]
    return flags


def trained(manifest: Path, out: Path, extra: list[str]) -> dict:
    """Train ``out`` unless it is there from an earlier run with the same recipe; return the train report."""
    report_path = out.with_suffix(".train.json")
    flags = recipe_flags() + extra
    if out.exists() and report_path.exists():
        saved = json.loads(report_path.read_text())
        if saved.get("flags") == flags:
            return saved
    report, wall, rss = measured(["train", str(manifest), "--out", str(out), "--force", *flags])
    saved = {"flags": flags, "timings": report["timings"], "process_s": wall, "peak_rss_mib": rss,
             "test_accuracy": report["metrics"]["test"]["accuracy"], "n_train": report["metrics"]["train"]["n"]}
    report_path.write_text(json.dumps(saved, indent=2))
    return saved


def clear_cache(ckpt: Path) -> None:
    for p in ckpt.parent.glob("*.curvature-*.safetensors"):
        p.unlink()


def forget(ckpt: Path, ids: Path, method: str, work: Path, env: dict[str, str] | None = None,
           manifest: Path | None = None, timeout: float | None = None) -> dict:
    out = work / f"{method}.out.safetensors"
    args = ["forget", str(ckpt), str(ids), "--method", method, "--out", str(out), "--force"]
    if manifest is not None:
        args += ["--data", str(manifest)]
    report, wall, rss = measured(args, env, timeout)
    for p in work.glob(f"{method}.out*"):
        p.unlink()
    t = report.get("timings") or {}
    after = (report.get("metrics") or {}).get("after") or {}
    row = {"method_s": t.get("method_s", float("nan")), "total_s": t.get("total_s", float("nan")),
           "startup_s": t.get("startup_s"), "process_s": wall, "peak_rss_mib": rss,
           "phases": {k: v for k, v in t.items() if k not in ("method_s", "total_s", "startup_s")},
           "test_after": (after.get("test") or {}).get("accuracy", float("nan")),
           "forget_after": (after.get("forget") or {}).get("accuracy", float("nan"))}
    if "refused" in report:
        row["refused"] = report["refused"]
    return row


def medians(rows: list[dict]) -> dict:
    keys = ("method_s", "total_s", "process_s", "peak_rss_mib", "test_after", "forget_after")
    out = {k: statistics.median(r[k] for r in rows) for k in keys}
    phase_keys = sorted({k for r in rows for k in r["phases"]})
    out["phases"] = {k: statistics.median(r["phases"].get(k, 0.0) for r in rows) for k in phase_keys}
    out["runs"] = [{k: r[k] for k in ("method_s", "process_s", "peak_rss_mib", "refused") if k in r} for r in rows]
    return out


def scale_point(n: int, reps: int, request: int, timeout: float | None = None,
                methods: tuple[str, ...] = METHODS) -> dict:
    from unlearn_cli.data.workloads import WorkloadSpec, ensure_workload

    folder = CACHE / f"scale-{n}"
    t0 = time.perf_counter()
    manifest = ensure_workload(WorkloadSpec(n=n), folder)
    generate_s = time.perf_counter() - t0
    plain, sisa = folder / "mlp.safetensors", folder / "sisa5.safetensors"
    train_plain = trained(manifest, plain, [])
    train_sisa = trained(manifest, sisa, ["--sisa-shards", "5"])
    ids = folder / f"request-{request}.txt"
    subprocess.run(unlearn() + ["mark", str(manifest), "--strategy", "random", "--count", str(request),
                                "--seed", "0", "--out", str(ids), "--force", "--quiet"], check=True)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        work = Path(tmp)
        for rep in range(reps):
            for method in methods:
                print(f"n={n} round {rep + 1}/{reps}: {method}", file=sys.stderr, flush=True)
                if method == "puma_cold":
                    clear_cache(plain)
                ckpt = sisa if method == "sisa" else plain
                try:
                    runs[method].append(forget(ckpt, ids, method.split("_")[0], work, timeout=timeout))
                except TimedOut as cut:
                    runs[method].append({"timed_out": timeout, "peak_rss_mib": cut.peak_rss_mib})
    clear_cache(plain)
    return {"n": n, "generate_s": generate_s, "train": train_plain, "train_sisa": train_sisa,
            "methods": {m: summary(rows, timeout) for m, rows in runs.items()}}


def summary(rows: list[dict], timeout: float | None) -> dict:
    """Medians over the runs that finished; runs cut at ``timeout`` are counted, not timed."""
    done = [r for r in rows if "timed_out" not in r]
    cut_rss = [r["peak_rss_mib"] for r in rows if "timed_out" in r and "peak_rss_mib" in r]
    return {**(medians(done) if done else {"runs": []}), "timed_out": len(rows) - len(done), "timeout_s": timeout,
            **({"peak_rss_mib_until_cut": max(cut_rss)} if cut_rss else {})}


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def threads_table(reps: int, request: int, timeout: float) -> list[dict]:
    """mnist-5k retrain under 0, 1, 2 competing busy loops, old vs new thread setting, alternating."""
    rows: dict[tuple[int, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = work / "model.safetensors"  # a copy: other users of the shipped checkpoint hold its lock
        ckpt.write_bytes((MNIST / "model.safetensors").read_bytes())
        manifest = MNIST / "manifest.yaml"
        ids = work / "ids.txt"
        subprocess.run(unlearn() + ["mark", str(manifest), "--strategy", "random", "--count", str(request),
                                    "--seed", "0", "--out", str(ids), "--quiet"], check=True)
        for rep in range(reps):
            for busy in (0, 1, 2):
                for name, env in THREAD_SETTINGS.items():
                    print(f"threads round {rep + 1}/{reps}: {busy} busy, {name}", file=sys.stderr, flush=True)
                    loops = busy_loops(busy)
                    try:
                        time.sleep(0.5)
                        load = os.getloadavg()[0]
                        row = forget(ckpt, ids, "retrain", work, env, manifest, timeout)
                    except TimedOut:
                        row = {"timed_out": timeout}
                    finally:
                        for p in loops:
                            p.kill()
                            p.wait()
                    row["loadavg_at_start"] = load
                    rows.setdefault((busy, name), []).append(row)
    table = []
    for (busy, name), runs in rows.items():
        table.append({"busy": busy, "setting": name, "env": THREAD_SETTINGS[name], **summary(runs, timeout),
                      "loadavg_at_start": [r["loadavg_at_start"] for r in runs]})
    return table


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "loadavg_at_start": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="5000,50000,500000", help="comma-separated data set sizes")
    parser.add_argument("--reps", type=int, default=3, help="rounds of the scale part (medians)")
    parser.add_argument("--threads-reps", type=int, default=2, help="rounds of the threads part")
    parser.add_argument("--request", type=int, default=100, help="records per request")
    parser.add_argument("--run-timeout", type=float, default=900, help="seconds before a forget run is cut (reported as cut)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="scale part: which of them to (re)measure; the others of a size measured before stay")
    parser.add_argument("--skip-threads", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.n.split(",") if s.strip()]
    command = "nice python " + " ".join(shlex.quote(a) for a in [str(Path(__file__).relative_to(REPO)), *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A part that is skipped keeps its last results (each part records its own command, machine and load).
    previous = RESULTS / "scale.json"
    result: dict = json.loads(previous.read_text()) if previous.exists() else {}
    if not args.skip_scale:
        part = {"command": command, "machine": machine(), "request_size": args.request, "reps": args.reps,
                "recipe": {"file": str(RECIPE.relative_to(REPO)), "hidden": HIDDEN, "flags": recipe_flags()},
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        # Points of other sizes from an earlier run are kept, each with the command and load it ran under.
        kept = [p for p in result.get("scale", {}).get("points", []) if p["n"] not in sizes]
        methods = tuple(m for m in args.methods.split(",") if m)
        if set(methods) - set(METHODS):
            parser.error(f"--methods takes {','.join(METHODS)}")
        before = {p["n"]: p for p in result.get("scale", {}).get("points", [])}
        for n in sizes:
            point = scale_point(n, args.reps, args.request, args.run_timeout, methods)
            point.update(command=command, reps=args.reps, loadavg_at_start=part["machine"]["loadavg_at_start"],
                         loadavg_at_end=list(os.getloadavg()))
            if n in before and set(methods) != set(METHODS):  # a partial re-measure: keep the other methods
                for key, value in before[n]["methods"].items():
                    point["methods"].setdefault(key, {**value, "command": before[n].get("command")})
                point["methods"] = {k: point["methods"][k] for k in METHODS if k in point["methods"]}
            kept.append(point)
            part["points"] = sorted(kept, key=lambda p: p["n"])
            result["scale"] = part
            save(result, ("scale",))  # after every size: a long run that is cut keeps what it measured
        part["loadavg_at_end"] = list(os.getloadavg())
    if not args.skip_threads:
        part = {"command": command, "machine": machine(), "request_size": args.request, "reps": args.threads_reps,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        part["rows"] = threads_table(args.threads_reps, args.request, args.run_timeout)
        part["loadavg_at_end"] = list(os.getloadavg())
        result["threads"] = part
    save(result, tuple(k for k, skip in (("scale", args.skip_scale), ("threads", args.skip_threads)) if not skip))
    print(render(result))


def save(result: dict, parts: tuple[str, ...]) -> None:
    """Write ``parts`` of ``result`` into scale.json, keeping what another invocation wrote of the others."""
    path = RESULTS / "scale.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    fresh = {k: result[k] for k in parts if k in result}
    if "scale" in fresh and "scale" in merged:  # points of sizes this run did not measure stay as written
        mine = {p["n"] for p in fresh["scale"]["points"] if p.get("command") == fresh["scale"]["command"]}
        others = [p for p in merged["scale"]["points"] if p["n"] not in mine]
        fresh["scale"]["points"] = sorted(others + [p for p in fresh["scale"]["points"] if p["n"] in mine],
                                          key=lambda p: p["n"])
    merged.update(fresh)
    result.update(merged)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    (RESULTS / "scale.md").write_text(render(result))
    if result.get("scale", {}).get("points"):
        write_plot(result["scale"], RESULTS / "scale.png")


if __name__ == "__main__":
    main()

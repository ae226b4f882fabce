"""Markdown tables and the log-log plot of benchmarks/scale.py's results (kept apart from the measuring)."""

from __future__ import annotations

from pathlib import Path

LABELS = {"retrain": "retrain", "sisa": "SISA (5 shards)", "puma_cold": "PUMA cold", "puma_warm": "PUMA warm",
          "salun": "SalUn"}
#: issue #16's targets, checked at every n >= 500k (and the growth from 50k to 500k).
TARGETS = {"warm_speedup": 100.0, "cold_speedup": 10.0, "warm_growth": 0.25, "puma_rss_mib": 2048.0}


def _machine(m: dict) -> str:
    return (f"{m['platform']}, {m['processor']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), "
            f"{m['memory_gib']} GiB, Python {m['python']}, torch {m['torch']}; "
            f"load average at start {', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])}")


def _scale_tables(part: dict) -> list[str]:
    lines = ["## Part 1: one request of %d records against n" % part["request_size"], "",
             f"Command: `{part['command']}` (started {part['started']})  ",
             f"Machine: {_machine(part['machine'])}; at end "
             f"{', '.join(f'{x:.1f}' for x in part.get('loadavg_at_end', []))}  ",
             f"Model: MLP --hidden {part['recipe']['hidden']}, recipe `{part['recipe']['file']}` "
             f"(`{' '.join(part['recipe']['flags'])}`); medians of {part['reps']} alternating rounds.", "",
             "| n | train recs | method | method_s | total_s | process (s) | peak RSS (MiB) | test acc after | "
             "forget acc after |", "|---|---|---|---|---|---|---|---|---|"]
    for point in part["points"]:
        n_train = f"{point['train']['n_train']:,}" if "n_train" in point["train"] else ""
        for key, label in LABELS.items():
            m = point["methods"][key]
            if "method_s" not in m:
                cut = f"> {m['timeout_s']:.0f} (cut)"
                rss = f"{m['peak_rss_mib_until_cut']:.0f} until cut" if "peak_rss_mib_until_cut" in m else ""
                lines.append(f"| {point['n']:,} | {n_train} | {label} | {cut} | | {cut} | {rss} | | |")
                continue
            refused = sum("refused" in r for r in m.get("runs", []))
            label = f"{label} (refused, exit 3: {refused} of {len(m['runs'])})" if refused else label
            if m.get("timed_out"):
                label += f" ({m['timed_out']} run(s) cut at {m['timeout_s']:.0f} s)"
            lines.append(f"| {point['n']:,} | {n_train} | {label} | {m['method_s']:.3f} | {m['total_s']:.2f} | "
                         f"{m['process_s']:.2f} | {m['peak_rss_mib']:.0f} | {m['test_after']:.3f} | "
                         f"{m['forget_after']:.3f} |")
    lines += ["", "Training the checkpoints (once per n, not part of a request):", "",
              "| n | plain train (s) | SISA-5 train (s) | test acc | train peak RSS (MiB) |", "|---|---|---|---|---|"]
    for point in part["points"]:
        lines.append(f"| {point['n']:,} | {point['train']['process_s']:.1f} | {point['train_sisa']['process_s']:.1f} | "
                     f"{point['train']['test_accuracy']:.3f} | {point['train']['peak_rss_mib']:.0f} |")
    lines += ["", "Each size's own run (sizes may come from separate invocations):", "",
              "| n | command | rounds | load average at start | at end |", "|---|---|---|---|---|"]
    for point in part["points"]:
        if "command" in point:
            lines.append(f"| {point['n']:,} | `{point['command']}` | {point['reps']} | "
                         f"{', '.join(f'{x:.1f}' for x in point['loadavg_at_start'])} | "
                         f"{', '.join(f'{x:.1f}' for x in point['loadavg_at_end'])} |")
    return lines + [""] + _targets(part["points"]) + [""] + _phases(part["points"])


def _targets(points: list[dict]) -> list[str]:
    by_n = {p["n"]: p["methods"] for p in points}
    sizes = [n for n in sorted(by_n) if n >= 500_000] or [max(by_n)]
    lines: list[str] = []
    for n in sizes:
        lines += ([""] if lines else []) + _targets_at(n, by_n)
    return lines


def _targets_at(big: int, by_n: dict[int, dict]) -> list[str]:
    m = by_n[big]
    lines = [f"### Targets (issue #16) at n = {big:,}", "",
             "| target | measured (method_s) | measured (whole process) | met? |", "|---|---|---|---|"]

    def ratio(a: str, b: str, key: str) -> float:
        """a's time over b's; a run cut at the timeout counts as the timeout (so b's ratio is an upper bound)."""
        return _time(m[a], key) / _time(m[b], key)

    for label, key, goal in (("PUMA warm >= 100x faster than retrain", "puma_warm", TARGETS["warm_speedup"]),
                             ("PUMA cold >= 10x faster than retrain", "puma_cold", TARGETS["cold_speedup"])):
        own, proc = ratio("retrain", key, "method_s"), ratio("retrain", key, "process_s")
        lines.append(f"| {label} | {own:.1f}x | {proc:.1f}x | {'yes' if own >= goal else 'no'} (method_s) |")
    if big == 500_000 and 50_000 in by_n:
        a, b = by_n[50_000]["puma_warm"], by_n[500_000]["puma_warm"]
        own, proc = _time(b, "method_s") / _time(a, "method_s") - 1, _time(b, "process_s") / _time(a, "process_s") - 1
        lines.append(f"| PUMA warm grows <= 25% from 50k to 500k | {own:+.0%} | {proc:+.0%} | "
                     f"{'yes' if own <= TARGETS['warm_growth'] else 'no'} (method_s) |")
    rss = max(m[k].get(f, 0) for k in ("puma_cold", "puma_warm") for f in ("peak_rss_mib", "peak_rss_mib_until_cut"))
    if any(m[k].get("timed_out") for k in m):
        lines.append("| (a run cut at the timeout counts as the timeout: its ratios are bounds) | | | |")
    lines.append(f"| PUMA request peak RSS < 2 GiB | | {rss:.0f} MiB | {'yes' if rss < TARGETS['puma_rss_mib'] else 'no'} |")
    return lines


def _time(m: dict, key: str) -> float:
    return m[key] if key in m else float(m["timeout_s"])


def _phases(points: list[dict]) -> list[str]:
    keys = sorted({k for p in points for m in ("puma_cold", "puma_warm") for k in p["methods"][m].get("phases", {})})
    head = " | ".join(f"{p['n']:,} cold | {p['n']:,} warm" for p in points)
    lines = ["### Where a PUMA request's time goes (medians, s)", "", f"| phase | {head} |",
             "|---|" + "---|" * (2 * len(points))]
    for k in keys:
        cells = " | ".join(f"{p['methods']['puma_cold'].get('phases', {}).get(k, 0):.3f} | "
                           f"{p['methods']['puma_warm'].get('phases', {}).get(k, 0):.3f}" for p in points)
        lines.append(f"| {k} | {cells} |")
    return lines


def _threads_table(part: dict) -> list[str]:
    rows = {(r["busy"], r["setting"]): r for r in part["rows"]}
    quiet = rows.get((0, "new"))
    lines = ["## Part 2: mnist-5k retrain beside competing CPU-bound processes", "",
             f"Command: `{part['command']}` (started {part['started']})  ",
             f"Machine: {_machine(part['machine'])}  ",
             "old = torch's default threads (one per core) with libgomp's default spin-waits "
             "(`UNLEARN_THREADS=2 GOMP_SPINCOUNT=300000`); new = the default now "
             "(`UNLEARN_THREADS=auto`, `OMP_WAIT_POLICY=PASSIVE`). A competitor is a Python busy loop; "
             f"medians of {part['reps']} alternating rounds.", "",
             "| competing | setting | method_s | process (s) | x quiet (new, method_s) | load avg at start |",
             "|---|---|---|---|---|---|"]
    for (busy, setting), r in sorted(rows.items()):
        load = ", ".join(f"{x:.1f}" for x in r["loadavg_at_start"])
        if "method_s" not in r:
            lines.append(f"| {busy} | {setting} | > {r['timeout_s']:.0f} (cut) | > {r['timeout_s']:.0f} | | {load} |")
            continue
        slow = f"{r['method_s'] / quiet['method_s']:.2f}x" if quiet and "method_s" in quiet else ""
        cut = f" ({r['timed_out']} run(s) cut at {r['timeout_s']:.0f} s)" if r.get("timed_out") else ""
        lines.append(f"| {busy} | {setting} | {r['method_s']:.1f}{cut} | {r['process_s']:.1f} | {slow} | {load} |")
    if quiet and "method_s" in quiet and "method_s" in rows.get((1, "new"), {}):
        factor = rows[(1, "new")]["method_s"] / quiet["method_s"]
        lines += ["", f"Target: one competing process <= 1.5x the quiet time: {factor:.2f}x "
                      f"({'met' if factor <= 1.5 else 'not met'})."]
    return lines


def render(result: dict) -> str:
    lines = ["# Scale: the cost of a deletion request against data set size (issue #16)", "",
             "Written by `benchmarks/scale.py`; raw numbers in `scale.json`, the plot in `scale.png`. "
             "The machine is shared: other users' load (the load averages below) disturbs the times.", ""]
    if result.get("scale"):
        lines += _scale_tables(result["scale"]) + [""]
    if result.get("threads"):
        lines += _threads_table(result["threads"]) + [""]
    earlier = [k for k in ("threads_round1", "threads_round2_max_policy") if result.get(k)]
    if earlier:
        lines += ["Earlier rounds, with the first auto policy (the larger load signal, no second task per CPU; "
                  "kept in scale.json):", ""]
        for key in earlier:
            lines += [f"### {key}", ""] + _threads_table(result[key])[6:] + [""]
    return "\n".join(lines)


def write_plot(part: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(part["points"], key=lambda p: p["n"])
    ns = [p["n"] for p in points]
    fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, label in LABELS.items():
        # a run cut at the timeout is drawn at the timeout (a lower bound of its time)
        line, = ax_time.plot(ns, [_time(p["methods"][key], "method_s") for p in points], "o-",
                             label=f"{label} (method)")
        ax_time.plot(ns, [_time(p["methods"][key], "process_s") for p in points], "s--", color=line.get_color(),
                     alpha=0.5, label=f"{label} (process)")
        ax_rss.plot(ns, [p["methods"][key].get("peak_rss_mib", float("nan")) for p in points], "o-", label=label)
    ax_time.set(xscale="log", yscale="log", xlabel="records n", ylabel="seconds",
                title=f"one request of {part['request_size']} records")
    ax_rss.axhline(2048, color="grey", linestyle=":", label="2 GiB target (PUMA)")
    ax_rss.set(xscale="log", yscale="log", xlabel="records n", ylabel="peak RSS (MiB)", title="peak memory")
    ax_time.legend(fontsize=7, ncol=2)
    ax_rss.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

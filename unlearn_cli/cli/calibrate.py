"""unlearn calibrate: find the records that make a model mis-calibrated and patch them out with PUMA.

Examples:
    unlearn calibrate model.safetensors
    unlearn calibrate model.safetensors --out model.cal.safetensors --plot reliability.png
    unlearn calibrate model.safetensors --eta 1e-3 --baseline none --json > calibration.json
    unlearn calibrate model.safetensors --holdout 0.3 --top 50 --report calibration.json

Held-out records only: C, eta and the temperature are fitted on the manifest's
splits.validation and every number is reported on its test split; a manifest
without a validation split gives a seeded carve-out of its test split
(--holdout, default one half, to fit on; the rest to report on). A manifest
with only a train split is refused (exit 2): add splits.validation or a test
split. The model is never fitted on records it trained on (their confidence is
what calibration must correct).

Algorithm 3 of the PUMA paper (appendix E): with C = ECE (a differentiable
soft-binned surrogate) it scores every training record's influence on C from
one cached iHVP, sorts the k lowest-influence records into over-confident,
over-uncertain and other-noise, and patches the weights once with PUMA
(Algorithm 1, the same code `forget --method puma` runs), removing the
over-confident and other-noise records and up-weighting the over-uncertain
ones. eta is the largest value on a geometric grid (1e-5 .. 1e-1) that lowers
the ECE of the held-out fitting records without lowering their accuracy, and
whose next larger grid value costs at most 2% of their accuracy. The checkpoint
written holds that patch and then a temperature refitted on the held-out
fitting records, folded into the last linear layer (when it lowers their NLL);
the "written" column measures exactly those weights. When neither changes
anything the status is "nothing-to-do": an --out named on the command line is
still written (the weights unchanged, so a pipeline finds its file); the
default output is not.

Reported on the test split, before and after: ECE (15 equal-width bins), MCE,
adaptive (equal-mass) ECE, class-wise ECE, NLL, Brier score, accuracy and the
reliability table per bin, beside temperature scaling fitted on the same
held-out records (--baseline none skips it and writes the PUMA patch alone). The calibrated checkpoint goes to
<stem>.calibrated.safetensors (or --out); the input is never modified. It is
published like forget's output (temp file, verified, renamed, under the
output's and the ledger's locks) with one ledger line (command "calibrate";
--ledger, default unlearn-ledger.jsonl beside the output). Its metadata
records the calibration under "calibration" and one "lineage" entry with
method "calibrate". --plot FILE.png draws reliability diagrams (needs the
plots extra: pip install -e '.[plots]' in a source checkout, else
pip install 'unlearn-cli[plots]'). An existing output (the
checkpoint, --plot, --report) is refused unless --force is given; no output
may be the checkpoint, its sidecars, the manifest, its data file or another output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from unlearn_cli.cli.options import (
    DAMPING_DEFAULT, SOLVER_DEFAULT, CheckpointArg, DampingOpt, DataOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt,
    QuietOpt, ReportOpt, SeedOpt, SolverOpt,
)
from unlearn_cli.cli.output import command_run, fmt, keep_whole, key_values, show

METRIC_ROWS = ("accuracy", "ece", "mce", "adaptive_ece", "classwise_ece", "nll", "brier")


def calibrate(
    checkpoint: CheckpointArg,
    data: DataOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="FILE", help="Calibrated checkpoint (default <stem>.calibrated.safetensors).")] = None,
    ledger: Annotated[Optional[Path], typer.Option(
        "--ledger", help="Append-only JSON-lines audit log, the one forget writes to (default: "
        "unlearn-ledger.jsonl beside the output).", metavar="FILE")] = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Seconds to wait for another run's lock before exiting with code 4.",
        metavar="SECONDS")] = 0.0,
    baseline: Annotated[str, typer.Option(
        "--baseline", metavar="temperature|none",
        help="Also fit temperature scaling on the held-out records and report it side by side.")] = "temperature",
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FILE.png",
        help="Write reliability diagrams before/after (needs matplotlib: the plots extra).")] = None,
    holdout: Annotated[float, typer.Option(
        "--holdout", metavar="SHARE", help="Without splits.validation: share of the test split to fit eta and the "
        "temperature on; the rest is reported on (default 0.5).")] = 0.5,
    top: Annotated[Optional[int], typer.Option(
        "--top", "-k", metavar="K", help="Algorithm 3's k: low-influence records to sort (default 10% of the fitting records).")] = None,
    eta: Annotated[Optional[float], typer.Option(
        "--eta", metavar="ETA", help="Fixed projection rate instead of the held-out grid search.")] = None,
    solver: SolverOpt = SOLVER_DEFAULT,
    damping: DampingOpt = DAMPING_DEFAULT,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Measure calibration and patch the model with PUMA's Algorithm 3 (C = ECE); temperature scaling beside it.

    \b
    Examples:
      unlearn calibrate model.safetensors
      unlearn calibrate model.safetensors --out calibrated.safetensors \\
          --plot reliability.png
      unlearn calibrate model.safetensors --eta 1e-3 --baseline none --json

    Fits on held-out records only (splits.validation, else half of the test
    split) and reports ECE (15 bins), MCE, adaptive ECE, class-wise ECE, NLL,
    Brier, accuracy and the reliability table on records the fit never saw.
    On a 2-core CPU breast-cancer takes about 10 s.
    """
    with command_run("calibrate", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        from unlearn_cli.ops.locking import check_wait

        check_wait(wait)  # before the slow imports: a nan or negative --wait is refused at once
        run.preload("torch", "unlearn_cli.influence.engine")  # timed as startup_s, outside total_s
        from unlearn_cli.errors import BadInput

        if plot is not None:  # a missing extra must fail before any work
            from unlearn_cli.diagnostics.plots import require_matplotlib

            require_matplotlib()
            if plot.suffix.lower() != ".png":
                raise BadInput(f"--plot {plot}: the reliability diagram is a PNG; name it FILE.png")
            run.output_checked("--plot", plot)
        if baseline not in ("temperature", "none"):
            raise BadInput(f"--baseline must be temperature or none, got '{baseline}'")

        from unlearn_cli.diagnostics.calibration import CalibrationSettings
        from unlearn_cli.diagnostics.calibration import calibrate as run_calibration
        from unlearn_cli.forget.calibrated import publish_calibrated
        from unlearn_cli.forget.targets import plan_calibrate_targets
        from unlearn_cli.ops.paths import sidecars_of
        from unlearn_cli.influence.solvers.base import check_solver
        from unlearn_cli.training.loop import resolve_device
        from unlearn_cli.models.datasets import open_checkpoint

        check_solver(solver)
        dev = resolve_device(device)
        targets = plan_calibrate_targets(checkpoint, out, ledger, wait)
        outputs = [("--out" if out is not None else "the output", targets.out),
                   ("--ledger" if ledger is not None else "the ledger", targets.ledger), ("--plot", plot)]
        run.output_checked(outputs[0][0], targets.out)
        run.output_checked(outputs[1][0], targets.ledger, replace=True)  # append-only
        run.claim([("input checkpoint", checkpoint), ("--data manifest", data)], outputs)
        with run.phase("load"):
            ckpt, dataset = open_checkpoint(checkpoint, data)
        run.input("checkpoint", ckpt.path, ckpt.sha256)
        run.input("data", dataset.data_path, dataset.data_sha256)
        run.claim([("input checkpoint", ckpt.path), *sidecars_of(ckpt.path, ckpt.sha256),
                   ("manifest", dataset.manifest_path), ("data file", dataset.data_path)], outputs)
        settings = CalibrationSettings(
            holdout=holdout, k=top, eta=eta, baseline=None if baseline == "none" else baseline, solver=solver,
            damping=damping, seed=int(seed if seed is not None else ckpt.training.get("seed", 0)),
        )
        settings.validate()
        run.data["config"] = {**settings.reported(), "device": str(dev)}
        with run.phase("calibrate"):
            with run.progress() as bar:
                result = run_calibration(ckpt, dataset, device=dev, settings=settings, progress=bar)
        for name, value in result.timings.items():
            run.data["timings"][f"calibrate.{name}"] = round(value, 6)
        run.data["metrics"] = {**result.metrics, "eta": result.info["eta"], "algorithm3": result.info}
        if result.state is None and out is not None:  # asked for by name: written, with the weights unchanged
            run.data["status"] = "nothing-to-do"
            run.warn("neither an eta on the grid nor a temperature improved the held-out fitting records; "
                     f"{out} holds the weights unchanged")
            result.state = {k: v.clone() for k, v in ckpt.state.items()}
            for side in ("test", "held_out"):
                result.metrics[side]["written"] = result.metrics[side]["before"]
        if result.state is None:
            run.data["status"] = "nothing-to-do"
            run.warn("neither an eta on the grid nor a temperature improved the held-out fitting records; "
                     "no calibrated checkpoint was written (name one with --out to write it unchanged)")
        else:
            with run.phase("write"):
                published = publish_calibrated(targets, ckpt, dataset, result, settings.reported(), wait=wait,
                                               warn=run.warn)
            run.data["outputs"].update(published)
            written, before = result.metrics["test"]["written"], result.metrics["test"]["before"]
            if written["nll"] > before["nll"] or written["ece"] > before["ece"]:
                run.warn(f"on the report records ({result.metrics['split']['report']}) the written model's NLL / ECE "
                         f"{written['nll']:.4g} / {written['ece']:.4g} are not both below the original's "
                         f"{before['nll']:.4g} / {before['ece']:.4g}")
        if plot is not None:
            from unlearn_cli.diagnostics.plots import reliability_png
            from unlearn_cli.ops.atomic import write_bytes

            panels = {"before": result.metrics["test"]["before"]}
            if result.metrics["test"].get("puma"):
                panels[f"PUMA (eta {result.info['eta']:.3g})"] = result.metrics["test"]["puma"]
            if result.metrics["test"].get("temperature"):
                panels[f"temperature (T {result.metrics['temperature']:.3g})"] = result.metrics["test"]["temperature"]
            with run.phase("plot"):
                digest = write_bytes(plot, reliability_png(panels, f"{ckpt.path.name} on {dataset.name} (test split)"))
            run.output("plot", plot, digest)
        show(run, _metrics_table(result.metrics, dataset.name), key_values("calibrate", _summary(result, run)))


def _metrics_table(metrics: dict[str, Any], dataset: str):
    from rich.table import Table

    test = metrics["test"]
    columns = [("before", test["before"]), ("PUMA", test.get("puma"))]
    if "temperature" in test:
        columns.append(("temperature", test["temperature"]))
    if test.get("written"):
        columns.append(("written", test["written"]))
    where = (metrics.get("split") or {}).get("report", "test")
    table = Table(title=f"calibration of {dataset} on {where} ({test['before']['n']} records)",
                  title_justify="left")
    table.add_column("metric")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for row in METRIC_ROWS:
        table.add_row(row, *(fmt(values[row]) if values else "-" for _, values in columns))
    return keep_whole(table)


def _summary(result: Any, run: Any) -> dict[str, Any]:
    info = result.info
    split = result.metrics["split"]
    rows: dict[str, Any] = {
        "fitted on": f"{split['fit']} ({split['fit_records']} records)",
        "reported on": f"{split['report']} ({split['report_records']} records)",
        "eta": info["eta"] if info["eta"] is not None else "none lowered the held-out ECE",
        "Algorithm 3 (k)": info["k"],
        "over-confident / over-uncertain / other-noise": (
            f"{info['over_confident']} / {info['over_uncertain']} / {info['other_noise']}"),
        "removed / up-weighted": f"{info['forget']} / {info['upweight']} ({info['upweight_from']})",
        "held-out ECE before": result.metrics["held_out"]["before"]["ece"],
    }
    if result.metrics["held_out"]["puma"]:
        rows["held-out ECE after"] = result.metrics["held_out"]["puma"]["ece"]
    if "temperature" in result.metrics:
        rows["temperature T"] = result.metrics["temperature"]
    folded = info.get("written_temperature") or {}
    if folded.get("folded"):
        rows["written: temperature folded in"] = folded["temperature"]
    for name in ("checkpoint", "ledger", "plot"):
        if name in run.data["outputs"]:
            rows[name] = run.data["outputs"][name]["path"]
    return rows

"""unlearn forget: remove the influence of requested records from a checkpoint.

Examples:
    unlearn forget model.safetensors ids.txt --method puma --out model.puma.safetensors
    unlearn forget model.safetensors a.txt b.txt --method puma --set eta=0.05 --out patched.safetensors
    unlearn forget model.safetensors ids.txt --method retrain --out model.retrained.safetensors --json > report.json
    cat ids.txt | unlearn forget model.safetensors - --method puma --set solver=cg
    unlearn forget model.safetensors --queue /var/spool/unlearn --in-place --wait 600 --json  # from cron

Without --in-place the input checkpoint is never modified: without --out the
result goes to <stem>.unlearned.safetensors beside it. Either way the new
checkpoint is written to a temp file, verified and renamed into place, and one
line per run is appended to the ledger (default: unlearn-ledger.jsonl beside
the output). IDs the ledger shows were already removed are skipped; a request
made only of them does nothing (status nothing-to-do, exit 0). With --queue
every DIR/*.txt is one batch; files move to DIR/done/ (or DIR/failed/ with a
.reason, exit 2) once the checkpoint and ledger line are durable.

An existing output is replaced only with --force, or --in-place (which means
replace), or by a --queue run when that output descends from the input (the
run continues from it, so it keeps every earlier removal). No output (the
checkpoint, the ledger, --report) may be an input (the checkpoint, its
sidecars, ids files, --config, the manifest, its data file) or another output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from unlearn_cli.cli.options import (
    CheckpointArg, DataOpt, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, LedgerKeyOpt, QuietOpt, ReportOpt, SeedOpt,
)
from unlearn_cli.cli.output import command_run, key_values, show, split_table
from unlearn_cli.errors import one_line


def forget(
    checkpoint: CheckpointArg,
    requests: Annotated[
        Optional[List[str]], typer.Argument(help="Request (ids) files; '-' reads stdin. Omit with --queue.",
                                            metavar="IDS_FILE")
    ] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="Unlearning method (see `unlearn methods`).",
                                        metavar="NAME")] = "puma",
    data: DataOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output checkpoint (default <stem>.unlearned.safetensors beside the input).",
        metavar="FILE")] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML file of method options.", metavar="FILE.yaml")
    ] = None,
    set_: Annotated[
        Optional[List[str]], typer.Option("--set", help="Method option key=value (repeatable; see "
                                          "`unlearn methods`).", metavar="KEY=VALUE")
    ] = None,
    ignore_unknown: Annotated[
        bool, typer.Option("--ignore-unknown", help="Skip IDs not in the train split instead of failing.")
    ] = False,
    queue: Annotated[
        Optional[Path], typer.Option("--queue", help="Process every *.txt in DIR as one batch; move each to "
                                     "DIR/done/ or DIR/failed/ when finished.", metavar="DIR")
    ] = None,
    ledger: Annotated[
        Optional[Path], typer.Option("--ledger", help="Append-only audit ledger (JSON lines; default "
                                     "unlearn-ledger.jsonl beside the output).", metavar="FILE")
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Replace the input checkpoint (atomically) instead of writing --out.")
    ] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for another run's lock before exiting with code 4.",
                            metavar="SECONDS")
    ] = 0.0,
    ledger_key: LedgerKeyOpt = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Remove the influence of the requested records; write a new checkpoint, a ledger line and a report.

    \b
    Examples:
      unlearn forget model.safetensors ids.txt --method puma \\
          --out puma.safetensors
      unlearn forget model.safetensors ids.txt --method retrain \\
          --out retrained.safetensors --json > retrain.json
      unlearn forget model.safetensors --queue spool/ --in-place --wait 600

    On a 2-core CPU: a few seconds on breast-cancer; on mnist-5k PUMA's first
    request about 25 s and retrain about 90 s. The input is never modified
    (without --in-place); an existing output is refused unless --force.
    """
    refused: list = []
    with command_run("forget", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        _check_paths(run, checkpoint, list(requests or []), out, config, data, queue, ledger, in_place, force)
        from unlearn_cli.ops.locking import check_wait

        check_wait(wait)  # before the slow imports: a nan or negative --wait is refused at once
        from unlearn_cli.forget.config import precheck_inputs

        precheck_inputs(config, list(requests or []))  # a FIFO, device or alias bomb: refused at once too
        with run.startup():  # torch and the method's modules, reported as startup_s
            from unlearn_cli.forget.job import ForgetJob
            from unlearn_cli.forget.run import forget as run_forget
            from unlearn_cli.methods.registry import get as get_method
            from unlearn_cli.training.loop import resolve_device

            get_method(method).preload()

        job = ForgetJob(
            checkpoint=checkpoint, requests=list(requests or []), method=method, data=data, out=out,
            config_file=config, sets=list(set_ or []), ignore_unknown=ignore_unknown,
            device=resolve_device(device), seed=seed, queue=queue, ledger=ledger, in_place=in_place, wait=wait,
            ledger_key=ledger_key,
        )
        with run.progress() as bar:
            fields = run_forget(job, warn=run.warn, timings=run.data["timings"], progress=bar)
        run.data.update({k: v for k, v in fields.items() if k != "timings"})
        refused = (fields.get("queue") or {}).get("failed") or []
        show(run, *_summary(fields, method, run.data["timings"], refused))
    _refused(refused)


def _check_paths(run, checkpoint: Path, requests: list[str], out: Optional[Path], config: Optional[Path],
                 data: Optional[Path], queue: Optional[Path], ledger: Optional[Path], in_place: bool,
                 force: bool) -> None:
    """Before any work: where the run writes is writable, replaces nothing it may not, and is no input."""
    from unlearn_cli.forget.targets import checkpoint_inputs, may_replace_output, plan_targets
    from unlearn_cli.ops.paths import check_writable_folder

    targets = plan_targets(checkpoint, out, ledger, queue, in_place)
    out_label = "--out" if out is not None else ("--in-place" if in_place else "the output")
    ledger_label = "--ledger" if ledger is not None else "the ledger"
    run.output_checked(out_label, targets.out, replace=may_replace_output(checkpoint, targets, in_place, force))
    run.output_checked(ledger_label, targets.ledger, replace=True)  # append-only
    if targets.queue is not None:
        check_writable_folder(f"--queue {targets.queue}:", targets.queue)
    inputs = checkpoint_inputs(checkpoint, data)
    inputs += [("ids file", Path(r)) for r in requests if r != "-"]
    inputs += [("--config file", config)]
    run.claim(inputs, [(out_label, None if in_place else targets.out), (ledger_label, targets.ledger)])


def _summary(fields: dict, method: str, timings: dict, refused: list) -> list:
    """The human view of a forget report: key facts, then before/after per split."""
    m = fields["metrics"]
    queue = {"done": len(fields["queue"]["done"]), "failed": len(refused)} if "queue" in fields else {}
    if fields["status"] != "ok":
        summary = {"status": fields["status"], "requested": m["requested"],
                   "already removed": m["already_removed"], **queue, "ledger": fields["ledger"]["path"]}
        return [key_values("forget: nothing applied, checkpoint unchanged", summary)]
    rows = {
        split: {"n": m["before"][split]["n"],
                "accuracy before": m["before"][split]["accuracy"], "accuracy after": m["after"][split]["accuracy"],
                "loss before": m["before"][split]["loss"], "loss after": m["after"][split]["loss"]}
        for split in ("test", "retain", "forget")
    }
    summary = {"method": method, "forgotten": m["forgotten"], "already removed": m["already_removed"], **queue,
               "output": fields["outputs"]["checkpoint"]["path"], "ledger": fields["ledger"]["path"],
               "method time (s)": f"{timings.get('method_s', 0.0):.2f}"}
    for key in ("eta", "solver", "damping", "solve_residual"):
        if key in m["method"]:
            summary[key] = m["method"][key]
    return [key_values("forget", summary),
            split_table("before / after", rows,
                        columns=("n", "accuracy before", "accuracy after", "loss before", "loss after"))]


def _refused(refused: list) -> None:
    """Queue files moved to failed/: the batch went ahead, but exit 2 so someone looks at them."""
    if not refused:
        return
    first = refused[0]
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    print("unlearn forget: error: " + one_line(f"refused {len(refused)} request file(s), moved to failed/ with "
                                               f"a .reason: {first['file']}: {first['reason']}{more}"),
          file=sys.stderr)
    raise typer.Exit(2)

"""unlearn forget: remove the influence of requested records from a checkpoint.

Examples:
    unlearn forget model.safetensors ids.txt --method puma
    unlearn forget model.safetensors a.txt b.txt --method puma --set eta=0.05 --out patched.safetensors
    unlearn forget model.safetensors ids.txt --method retrain --json > report.json
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
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from unlearn_cli.cli.options import CheckpointArg, DataOpt, DebugOpt, DeviceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt
from unlearn_cli.cli.output import command_run, key_values, show, split_table


def forget(
    checkpoint: CheckpointArg,
    requests: Annotated[
        Optional[List[str]], typer.Argument(help="Request (ids) files; '-' reads stdin. Omit with --queue.")
    ] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="Unlearning method (see `unlearn methods`).")] = "puma",
    data: DataOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output checkpoint.")] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML file of method options.")
    ] = None,
    set_: Annotated[
        Optional[List[str]], typer.Option("--set", help="Method option key=value (repeatable).")
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
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Remove the influence of the requested records; write a new checkpoint, a ledger line and a report."""
    refused: list = []
    with command_run("forget", report=report, json_out=json_out, quiet=quiet, debug=debug) as run:
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
        )
        fields = run_forget(job, warn=run.warn, timings=run.data["timings"])
        run.data.update({k: v for k, v in fields.items() if k != "timings"})
        refused = (fields.get("queue") or {}).get("failed") or []
        show(run, *_summary(fields, method, run.data["timings"], refused))
    _refused(refused)


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
               "method time (s)": round(timings.get("method_s", 0.0), 3)}
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
    print(f"unlearn forget: error: refused {len(refused)} request file(s), moved to failed/ with a .reason: "
          f"{first['file']}: {first['reason']}{more}", file=sys.stderr)
    raise typer.Exit(2)

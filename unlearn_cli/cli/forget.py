"""unlearn forget: remove the influence of requested records from a checkpoint.

Examples:
    unlearn forget model.safetensors ids.txt --method puma
    unlearn forget model.safetensors a.txt b.txt --method puma --set eta=0.05 --out patched.safetensors
    unlearn forget model.safetensors ids.txt --method retrain --json > report.json
    cat ids.txt | unlearn forget model.safetensors - --method puma --set solver=cg

The input checkpoint is never modified: without --out the result goes to
<stem>.unlearned.safetensors beside it, written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .options import CheckpointArg, DataOpt, DebugOpt, DeviceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt
from .output import command_run, key_values, show, split_table


def forget(
    checkpoint: CheckpointArg,
    requests: Annotated[List[str], typer.Argument(help="Request (ids) files; '-' reads stdin.")],
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
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Remove the influence of the requested records; write a new checkpoint and a report."""
    with command_run("forget", report=report, json_out=json_out, quiet=quiet, debug=debug) as run:
        from ..forgetting import ForgetJob
        from ..forgetting import forget as run_forget
        from ..training import resolve_device

        job = ForgetJob(
            checkpoint=checkpoint, requests=list(requests), method=method, data=data, out=out,
            config_file=config, sets=list(set_ or []), ignore_unknown=ignore_unknown,
            device=resolve_device(device), seed=seed,
        )
        fields = run_forget(job, warn=run.warn, timings=run.data["timings"])
        run.data.update({k: v for k, v in fields.items() if k != "timings"})
        m = fields["metrics"]
        rows = {
            split: {"n": m["before"][split]["n"],
                    "accuracy before": m["before"][split]["accuracy"], "accuracy after": m["after"][split]["accuracy"],
                    "loss before": m["before"][split]["loss"], "loss after": m["after"][split]["loss"]}
            for split in ("test", "retain", "forget")
        }
        summary = {"method": method, "forgotten": m["forgotten"], "output": fields["outputs"]["checkpoint"]["path"],
                   "method time (s)": round(run.data["timings"].get("method_s", 0.0), 3)}
        for key in ("eta", "solver", "damping", "solve_residual"):
            if key in m["method"]:
                summary[key] = m["method"][key]
        show(run, key_values("forget", summary),
             split_table("before / after", rows,
                         columns=("n", "accuracy before", "accuracy after", "loss before", "loss after")))

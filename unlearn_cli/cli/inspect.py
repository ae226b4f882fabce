"""unlearn inspect: what a checkpoint is: architecture, recipe, data set, lineage.

Reads only the safetensors header (no weights, no torch), so it is instant.

Examples:
    unlearn inspect sample_models/moons/model.safetensors
    unlearn inspect model.unlearned.safetensors --json | jq .metrics.lineage
"""

from __future__ import annotations

from unlearn_cli.cli.options import CheckpointArg, DebugOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt
from unlearn_cli.cli.output import command_run, key_values, show


def inspect(
    checkpoint: CheckpointArg,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show a checkpoint's architecture, training recipe, data set and removal lineage."""
    with command_run("inspect", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.claim([("input checkpoint", checkpoint)], [])
        from unlearn_cli.models.checkpoint import read_header_meta, removal_steps

        info = read_header_meta(checkpoint)
        run.input("checkpoint", checkpoint, info["sha256"])
        meta = info["meta"]
        run.data["metrics"] = {
            "kind": meta.get("kind", "plain"),
            "format": meta.get("format"),
            "arch": meta.get("arch"),
            "parameters": info["parameters"],
            "tensors": info["tensors"],
            "training": meta.get("training"),
            "dataset": meta.get("dataset"),
            "lineage": meta.get("lineage", []),
            "created": meta.get("created"),
            "recorded_metrics": meta.get("metrics"),
        }
        m = run.data["metrics"]
        rows = {
            "architecture": f"{m['arch']['name']} {m['arch'].get('kwargs', {})}",
            "kind": m["kind"],
            "parameters": m["parameters"],
            "training": m["training"],
            "dataset": m["dataset"],
            "removals": len(removal_steps(m["lineage"])),
        }
        renderables = [key_values(str(checkpoint), rows)]
        for i, entry in enumerate(m["lineage"], 1):
            renderables.append(key_values(f"step {i}: {entry.get('method', '?')}", entry))
        show(run, *renderables)

"""unlearn methods: list the unlearning methods, or one method's options.

Methods are plugins in the ``unlearn.methods`` entry-point group.

Examples:
    unlearn methods
    unlearn methods puma
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from unlearn_cli.cli.options import DebugOpt, DeviceOpt, JsonOpt, QuietOpt, ReportOpt, SeedOpt
from unlearn_cli.cli.output import command_run, show


def methods(
    name: Annotated[Optional[str], typer.Argument(help="Show this method's options.")] = None,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List unlearning methods, or show one method's options and defaults."""
    with command_run("methods", report=report, json_out=json_out, quiet=quiet, debug=debug) as run:
        from rich.table import Table

        from unlearn_cli.methods.registry import available, describe

        if name is None:
            found = available()
            run.data["metrics"] = {"methods": {n: describe(n)["summary"] for n in found}}
            table = Table(title="methods", title_justify="left")
            table.add_column("name")
            table.add_column("summary")
            for n, summary in run.data["metrics"]["methods"].items():
                table.add_row(n, summary)
            if not found:
                table.caption = "no methods are installed"
            show(run, table)
            return
        info = describe(name)
        run.data["metrics"] = {"method": info}
        table = Table(title=f"{name}: {info['summary']}", title_justify="left")
        for col in ("option", "type", "default", "meaning"):
            table.add_column(col)
        for opt in info["options"]:
            table.add_row(opt["name"], opt["type"], str(opt["default"]), opt["doc"])
        show(run, table)
        if info.get("details") and not (json_out or quiet):
            run.out.print(info["details"])

"""unlearn methods: list every plugin (methods first, then the other kinds), or one method's options.

Methods, architectures, attacks, label rankers, influence criteria and iHVP
solvers are plugins in the ``unlearn.<kind>`` entry-point groups; listing
reads installed metadata only (no plugin is imported but the methods, whose
summaries are shown).

Examples:
    unlearn methods
    unlearn methods puma
    unlearn methods --json
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from unlearn_cli.cli.options import DebugOpt, ForceOpt, JsonOpt, QuietOpt, ReportOpt
from unlearn_cli.cli.output import command_run, show


#: what each ``Method.requires`` asks of the checkpoint, as the command that makes one
NEEDS = {"plain": "any checkpoint", "sisa": "train --sisa-shards", "update-log": "train --track-updates"}


def _needs(requires: str, needs_recipe: bool = False) -> str:
    """The checkpoint a method needs; "a training recipe" if it retrains (``unlearn import --recipe``)."""
    need = NEEDS.get(requires, requires)
    # A checkpoint `unlearn train` wrote always has its recipe: only "any checkpoint" needs saying so.
    return f"{need}; a training recipe" if needs_recipe and requires == "plain" else need


def _describe(name: str) -> dict:
    """``methods.registry.describe`` plus ``needs_recipe`` (``Method.needs_recipe``)."""
    from unlearn_cli.methods.registry import describe, get

    return {**describe(name), "needs_recipe": bool(getattr(get(name), "needs_recipe", False))}


def _plugin_table(kind: str, found: dict):
    """One line per plugin of ``kind``: its name and the object it registers (module:attribute)."""
    from rich.table import Table

    table = Table(title=kind, title_justify="left")
    table.add_column("name")
    table.add_column("registered object")
    for name, entry_point in found.items():
        table.add_row(name, entry_point.value)
    return table


def _list_all(run) -> None:
    from rich.table import Table

    from unlearn_cli import plugins

    found = {kind: plugins.available(kind) for kind in plugins.KINDS}
    described = {n: _describe(n) for n in found["methods"]}
    run.data["metrics"] = {"methods": {n: info["summary"] for n, info in described.items()},
                           "plugins": {kind: list(entries) for kind, entries in found.items()}}
    table = Table(title="methods", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("needs", no_wrap=True)
    table.add_column("summary")
    for n, info in described.items():
        table.add_row(n, _needs(info["requires"], info["needs_recipe"]), info["summary"])
    show(run, table, *(_plugin_table(kind, entries) for kind, entries in found.items() if kind != "methods"))


def methods(
    name: Annotated[Optional[str], typer.Argument(metavar="METHOD", help="Show this method's options.")] = None,
    force: ForceOpt = False,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the plugins by kind (methods with what each needs), or show one method's options and defaults.

    \b
    Examples:
      unlearn methods
      unlearn methods puma
      unlearn methods --json

    A method's options are set with `unlearn forget --set key=value` or --config FILE.yaml.
    """
    with command_run("methods", report=report, json_out=json_out, quiet=quiet, debug=debug, force=force) as run:
        run.claim([], [])  # no input files: --report only has to be new (or --force)
        from rich.table import Table

        if name is None:
            _list_all(run)
            return
        info = _describe(name)
        run.data["metrics"] = {"method": info}
        table = Table(title=f"{name}: {info['summary']}\nneeds: {_needs(info['requires'], info['needs_recipe'])}", title_justify="left")
        for col in ("option", "type", "default", "range", "meaning"):
            table.add_column(col)
        for opt in info["options"]:
            table.add_row(opt["name"], opt["type"], str(opt["default"]), opt.get("range") or "", opt["doc"])
        if not info["options"]:
            table.add_row("(none)", "", "", "", "this method takes no options")
        show(run, table)
        if info.get("details") and not (json_out or quiet):
            run.out.print(info["details"])

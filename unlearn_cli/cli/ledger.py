"""unlearn ledger check: answer an auditor from the deletion ledger.

Examples:
    unlearn ledger check unlearn-ledger.jsonl 8 20
    unlearn ledger check unlearn-ledger.jsonl 8 --checkpoint moons.unlearned.safetensors --json > audit.json
    unlearn ledger check /srv/models/unlearn-ledger.jsonl alice@example.com 4711 --ledger-key /etc/unlearn/key

For each ID: the runs that removed it (run id, time, output path and sha256)
and, for each --checkpoint, whether that checkpoint no longer holds it (a run
that removed it produced the checkpoint or one of its lineage ancestors).
Exit 0 when every ID was removed (from every checkpoint given), 3 when some
were not ("not found" or "still held"), 2 on bad input. The report names IDs by
their position and digest, never raw; the table on stdout shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from unlearn_cli.cli.options import DebugOpt, HelpCommand, HelpGroup, JsonOpt, LedgerKeyOpt, QuietOpt, ReportOpt
from unlearn_cli.cli.output import command_run, show

app = typer.Typer(
    name="ledger", cls=HelpGroup, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Read the deletion ledger (audits).\n\n\b\nExamples:\n"
         "  unlearn ledger check unlearn-ledger.jsonl 8 20\n"
         "  unlearn ledger check unlearn-ledger.jsonl 8 --checkpoint moons.unlearned.safetensors --json\n\n"
         "forget and calibrate append one JSON line per run to the ledger, beside their output by default.",
)


@app.command("check", cls=HelpCommand)
def check(
    ledger: Annotated[Path, typer.Argument(help="The ledger (JSON lines) forget and calibrate append to.",
                                           metavar="LEDGER")],
    ids: Annotated[Optional[List[str]], typer.Argument(help="Record IDs to look up.", metavar="ID")] = None,
    checkpoint: Annotated[
        Optional[List[Path]], typer.Option("--checkpoint", help="Also tell whether this checkpoint no longer "
                                           "holds each ID (repeatable).", metavar="CKPT")
    ] = None,
    ledger_key: LedgerKeyOpt = None,
    report: ReportOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Which runs removed these IDs, and whether the given checkpoints still hold them.

    \b
    Examples:
      unlearn ledger check unlearn-ledger.jsonl 8 20
      unlearn ledger check unlearn-ledger.jsonl 8 --checkpoint moons.unlearned.safetensors --json
      unlearn ledger check /srv/models/unlearn-ledger.jsonl 8 --ledger-key /etc/unlearn/key

    Exit 0 when every ID was removed (from every checkpoint given), 3 when some were not.
    """
    with command_run("ledger check", report=report, json_out=json_out, quiet=quiet, debug=debug) as run:
        from unlearn_cli.errors import GateFailed
        from unlearn_cli.forget.audit import check_ids
        from unlearn_cli.ops.digests import resolve_key, sha256_or_none

        key = resolve_key(ledger_key)
        ids = list(ids or [])
        answer = check_ids(ledger, ids, checkpoint or [], key, run.warn)
        run.input("ledger", ledger, sha256_or_none(ledger))
        for n, path in enumerate(checkpoint or []):
            run.input(f"checkpoint{n}", path, answer["ids"][0]["checkpoints"][n]["sha256"] if answer["ids"] else None)
        run.data["config"] = {"key_id": answer["key_id"], "ids": len(ids)}
        run.data["metrics"] = {"summary": answer["summary"], "lines_other_key": answer["lines_other_key"]}
        run.data["ids"] = answer["ids"]
        show(run, _table(ids, answer))
        missing = len(ids) - answer["summary"]["removed"]
        if missing:
            run.data["status"] = "failed"
            raise GateFailed(f"{missing} of {len(ids)} IDs not removed ({answer['summary']['not_found']} not "
                             f"found in {ledger.name}, {answer['summary']['still_held']} still held by a checkpoint)")


def _table(ids: List[str], answer: dict):
    from rich.markup import escape
    from rich.table import Table

    from unlearn_cli.errors import escape_controls

    table = Table(title="ledger check", title_justify="left")
    for column in ("ID", "status", "runs (run id, time, output)", "checkpoints still holding it"):
        table.add_column(column)
    for record_id, item in zip(ids, answer["ids"]):
        runs = "\n".join(escape_controls(f"{r['run_id'][:12]} {r.get('time', '')} {r['output']['path']}")
                         for r in item["runs"])
        held = ", ".join(Path(c["path"]).name for c in item["checkpoints"] if c["holds"])
        table.add_row(escape(escape_controls(record_id)), item["status"], escape(runs) or "-",
                      escape(escape_controls(held)) or "-")
    return table

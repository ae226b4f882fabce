"""The ``unlearn`` command: a Typer app with one module per subcommand.

Only typer/rich are imported here; each command imports torch and the library
inside its function, so ``unlearn --help`` and ``unlearn methods`` stay fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from unlearn_cli import __version__

app = typer.Typer(
    name="unlearn",
    help=(
        "Make a trained classifier forget chosen training records, and prove it.\n\n"
        "Checkpoints are safetensors files written by `unlearn train`; data sets are YAML manifests. "
        "Exit codes: 0 ok, 1 internal error, 2 bad input, 3 a verification gate failed, 4 locked."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unlearn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
) -> None:
    """Make a trained classifier forget chosen training records, and prove it."""


def _register() -> None:
    from unlearn_cli.cli import attack, evaluate, forget, inspect, mark, methods, train

    app.command("train")(train.train)
    app.command("forget")(forget.forget)
    app.command("evaluate")(evaluate.evaluate)
    app.command("inspect")(inspect.inspect)
    app.command("methods")(methods.methods)
    app.command("mark")(mark.mark)
    app.command("attack")(attack.attack)
    from unlearn_cli.cli import calibrate, debug_labels

    app.command("debug-labels")(debug_labels.debug_labels)
    app.command("calibrate")(calibrate.calibrate)
    from unlearn_cli.cli import ledger

    app.add_typer(ledger.app, name="ledger")


_register()


def main() -> None:
    app()

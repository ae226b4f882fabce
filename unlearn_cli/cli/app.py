"""The ``unlearn`` command: a Typer app with one module per subcommand.

Only typer/rich are imported here; each command imports torch and the library
inside its function, so ``unlearn --help`` and ``unlearn methods`` stay fast.
Every command is registered with ``HelpCommand`` (``cli/options.py``): its
--help opens with the docstring's examples and names parameters readably.
Shell completion: ``unlearn --install-completion`` (bash, zsh, fish, PowerShell).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from unlearn_cli import __version__
from unlearn_cli.cli.options import HelpCommand, HelpGroup

app = typer.Typer(
    name="unlearn",
    help=(
        "Make a trained classifier forget chosen training records, and prove it.\n\n"
        "\b\nExamples:\n"
        "  unlearn train sample_models/moons/manifest.yaml --out moons.safetensors\n"
        "  unlearn mark sample_models/moons/manifest.yaml --strategy random --count 20 --out forget-ids.txt\n"
        "  unlearn forget moons.safetensors forget-ids.txt --method puma --out moons.unlearned.safetensors\n\n"
        "Checkpoints are safetensors files written by `unlearn train`; data sets are YAML manifests. "
        "Exit codes: 0 ok, 1 internal error, 2 bad input, 3 a verification gate failed, 4 locked. "
        "Each command's --help starts with examples."
    ),
    cls=HelpGroup,
    no_args_is_help=True,
    add_completion=True,
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
    from unlearn_cli.cli import (
        attack, calibrate, debug_labels, evaluate, forget, import_cmd, inspect, ledger, mark, methods, train,
    )

    for name, function in (
        ("train", train.train), ("forget", forget.forget), ("evaluate", evaluate.evaluate),
        ("inspect", inspect.inspect), ("methods", methods.methods), ("mark", mark.mark),
        ("attack", attack.attack), ("debug-labels", debug_labels.debug_labels), ("calibrate", calibrate.calibrate),
        ("import", import_cmd.import_),
    ):
        app.command(name, cls=HelpCommand)(function)
    app.add_typer(ledger.app, name="ledger")


_register()


def main() -> None:
    from unlearn_cli.ops.threads import prefer_passive_waits

    # OpenMP reads its wait policy once, when torch is first imported: idle workers must sleep, not
    # spin, or one competing process slows a 2-thread pass 5-25x (ops/threads.py, issue #16).
    prefer_passive_waits()
    app()

"""Option types shared by every command, declared once (typer Annotated aliases), and how they read in --help.

Every command is registered with :class:`HelpCommand` (the ``unlearn`` and
``unlearn ledger`` groups with :class:`HelpGroup`), so help reads the same
everywhere: the docstring's ``Examples:`` paragraph first, then the summary;
arguments by their metavar (``CKPT``, ``MANIFEST``, ``[NAME]``, ``[REQUESTS]...``);
options by their metavar or a plain type word (``--out PATH``, ``--epochs
INTEGER``), never typer's ``{manifest}`` or ``<list[str]>``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from unlearn_cli.influence.settings import InfluenceSettings


def _setting_help(name: str) -> str:
    """The influence setting's one-line doc as a help sentence: one text for --set keys and flags."""
    first, _, rest = InfluenceSettings.__dataclass_fields__[name].metadata["doc"].partition(" ")
    return f"{first.capitalize() if first.islower() else first} {rest}."  # "iHVP" keeps its case


ReportOpt = Annotated[
    Optional[Path], typer.Option("--report", metavar="FILE", help="Also write the JSON report to this file.")
]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace existing output files (--out, --report...) atomically instead of refusing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only the JSON report on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary tables.")]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (cuda when available), cpu or cuda.", metavar="auto|cpu|cuda")
]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", metavar="N", help="Random seed (default: the recorded or built-in one).")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", metavar="MANIFEST", help="Dataset manifest (default: the one recorded in the checkpoint)."),
]
CheckpointArg = Annotated[Path, typer.Argument(metavar="CKPT", help="A checkpoint written by unlearn (.safetensors).")]
SolverOpt = Annotated[str, typer.Option("--solver", metavar="NAME", help=_setting_help("solver"))]
DampingOpt = Annotated[float, typer.Option("--damping", metavar="F", help=_setting_help("damping"))]
#: --solver and --damping default to the influence settings' own defaults (debug-labels, calibrate)
SOLVER_DEFAULT: str = InfluenceSettings.solver
DAMPING_DEFAULT: float = InfluenceSettings.damping
#: --arch for train and import: a registered name or an import path (models/registry.py)
ArchOpt = Annotated[str, typer.Option(
    "--arch", metavar="NAME|MODULE:CALLABLE", help="Architecture: linear, mlp, cnn, densenet, a plugin's name, or "
    "an import path package.module:callable on PYTHONPATH (runs that module's code).")]
#: --arch-opt key=value, repeatable: the builder's options, typed by its signature
ArchOptsOpt = Annotated[Optional[list[str]], typer.Option(
    "--arch-opt", metavar="KEY=VALUE", help="An option of the architecture's builder, typed by its signature "
    "(e.g. width=32, hidden=64,32, dropout=0.1); repeatable. Recorded in the checkpoint.")]
LedgerKeyOpt = Annotated[
    Optional[Path],
    typer.Option("--ledger-key", metavar="FILE", help="Secret key file: the ledger, lineage and SISA metadata "
                 "record HMAC-SHA256 digests of IDs under it (and its key id, never the key). Default: the file "
                 "named by $UNLEARN_LEDGER_KEY_FILE; without either, plain SHA-256 digests with a warning."),
]


# -- how commands read in --help ---------------------------------------------------------------

#: typer's type labels (``<int>``) as the plain words of click's own help
_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}


def _type_word(param: Any, ctx: Any) -> str:
    """A parameter's type for help: ``<list[str]>`` -> TEXT, ``<a|b>`` -> ``a|b``, ``<int range>`` -> INTEGER."""
    label = param.display_type(ctx).strip("<>")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if "|" in label or not label:
        return label
    word = label.split()[0]
    return _TYPE_WORDS.get(word, word.upper())


def _argument_name(param: Any) -> str:
    """``CKPT``, ``MANIFEST``; a repeatable one gets ``...``."""
    name = param.metavar or (param.name or "").upper()
    return f"{name}..." if param.nargs != 1 else name


def _usage_piece(param: Any) -> str:
    """An argument in the usage line: ``CKPT``, ``[NAME]``, ``[REQUESTS]...`` (optional ones bracketed)."""
    name = param.metavar or (param.name or "").upper()
    piece = name if param.required else f"[{name}]"
    return f"{piece}..." if param.nargs != 1 else piece


def _help_record(param: Any, ctx: Any) -> tuple[str, str] | None:
    record = param.get_help_record(ctx)
    if record is None:
        return None
    name, text = record
    if param.param_type_name == "argument":
        return _argument_name(param), text
    if param.metavar is None and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        shown = param.display_type_rich(ctx)  # typer's "<path>", "<list[str]>..."
        word = _type_word(param, ctx) + ("..." if param.nargs != 1 else "")
        name = name.replace(f" {shown}", f" {word}")
    return name, text


def _format_params(command: Any, ctx: Any, formatter: Any) -> None:
    sections: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
    for param in command.get_params(ctx):
        record = _help_record(param, ctx)
        if record is not None and param.param_type_name in sections:
            sections[param.param_type_name].append(record)
    for title, kind in (("Arguments", "argument"), ("Options", "option")):
        if sections[kind]:
            with formatter.section(title):
                formatter.write_dl(sections[kind])


def _examples_first(help_text: str | None) -> tuple[str | None, str | None]:
    """(help with its ``Examples:`` paragraph moved to the front, the summary for command lists)."""
    if not help_text:
        return help_text, None
    paragraphs = re.split(r"\n[ \t]*\n", inspect.cleandoc(help_text))
    summary = paragraphs[0].strip()
    found = [i for i, p in enumerate(paragraphs) if p.lstrip("\b \n").startswith("Examples:")]
    if found and found[0] > 0:
        paragraphs.insert(0, paragraphs.pop(found[0]))
    return "\n\n".join(paragraphs), summary


class _ExamplesFirst:
    """--help text with its ``Examples:`` paragraph first; command lists keep showing the summary."""

    help: str | None
    short_help: str | None

    def _examples_first(self) -> None:
        self.help, self._summary = _examples_first(self.help)

    def get_short_help_str(self, limit: int = 45) -> str:
        if self.short_help or not self._summary:
            return super().get_short_help_str(limit)  # type: ignore[misc]
        from typer._click.utils import make_default_short_help  # the shortening click applies to help

        return make_default_short_help(self._summary, limit).strip()


class HelpCommand(_ExamplesFirst, TyperCommand):
    """A command whose --help starts with its examples and names parameters readably."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._examples_first()

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            pieces.extend([_usage_piece(param)] if param.param_type_name == "argument" else param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)


class HelpGroup(_ExamplesFirst, TyperGroup):
    """A group (``unlearn``, ``unlearn ledger``) whose --help starts with its examples."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._examples_first()

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)

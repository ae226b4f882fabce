"""Option types shared by every command, declared once (typer Annotated aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from unlearn_cli.influence.settings import InfluenceSettings


def _setting_help(name: str) -> str:
    """The influence setting's one-line doc as a help sentence: one text for --set keys and flags."""
    first, _, rest = InfluenceSettings.__dataclass_fields__[name].metadata["doc"].partition(" ")
    return f"{first.capitalize() if first.islower() else first} {rest}."  # "iHVP" keeps its case


ReportOpt = Annotated[
    Optional[Path], typer.Option("--report", help="Also write the JSON report to this file.")
]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace existing output files (--out, --report...) atomically instead of refusing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only the JSON report on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary tables.")]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (cuda when available), cpu or cuda.", metavar="auto|cpu|cuda")
]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: the recorded or built-in one).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", help="Dataset manifest (default: the one recorded in the checkpoint)."),
]
CheckpointArg = Annotated[Path, typer.Argument(help="A checkpoint written by unlearn (.safetensors).")]
SolverOpt = Annotated[str, typer.Option("--solver", help=_setting_help("solver"))]
DampingOpt = Annotated[float, typer.Option("--damping", help=_setting_help("damping"))]
#: --solver and --damping default to the influence settings' own defaults (debug-labels, calibrate)
SOLVER_DEFAULT: str = InfluenceSettings.solver
DAMPING_DEFAULT: float = InfluenceSettings.damping
LedgerKeyOpt = Annotated[
    Optional[Path],
    typer.Option("--ledger-key", metavar="FILE", help="Secret key file: the ledger, lineage and SISA metadata "
                 "record HMAC-SHA256 digests of IDs under it (and its key id, never the key). Default: the file "
                 "named by $UNLEARN_LEDGER_KEY_FILE; without either, plain SHA-256 digests with a warning."),
]

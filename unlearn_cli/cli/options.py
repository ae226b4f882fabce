"""Option types shared by every command, declared once (typer Annotated aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ReportOpt = Annotated[
    Optional[Path], typer.Option("--report", help="Also write the JSON report to this file.")
]
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
SolverOpt = Annotated[
    str,
    typer.Option("--solver", help="iHVP solver: auto (exact up to 5k parameters, else ekfac), exact, cg, lissa, kfac, ekfac."),
]
DampingOpt = Annotated[
    float, typer.Option("--damping", help="Added to the curvature diagonal (on top of the recipe's weight decay).")
]

"""Turn known failures into one line on stderr and the DESIGN.md exit code.

0 ok / nothing to do, 1 internal error, 2 usage or bad input, 3 a gate failed,
4 another run holds the lock. Tracebacks only with --debug.
"""

from __future__ import annotations

import sys
import traceback

import typer

from unlearn_cli.errors import UnlearnError, one_line


def fail(command: str, exc: BaseException, debug: bool) -> typer.Exit:
    """Print the one-line message for ``exc`` and return the typer.Exit to raise."""
    if debug:
        traceback.print_exc(file=sys.stderr)
    if isinstance(exc, UnlearnError):
        code = exc.exit_code
        message = one_line(str(exc))
    elif isinstance(exc, MemoryError):
        code, message = 1, "out of memory"
    elif isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        code, message = 2, f"no space left on device ({exc.filename or 'output'})"
    else:
        code = 1
        message = f"internal error: {type(exc).__name__}: {one_line(str(exc))} (rerun with --debug for a traceback)"
    print(f"unlearn {command}: error: {message}", file=sys.stderr)
    return typer.Exit(code)

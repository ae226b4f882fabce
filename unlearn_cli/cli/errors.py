"""Turn known failures into one line on stderr and the DESIGN.md exit code.

0 ok / nothing to do, 1 internal error, 2 usage or bad input, 3 a gate failed,
4 another run holds the lock. Tracebacks only with --debug. A file-system
failure the user can fix (read-only folder, permission denied, disk full,
quota) is bad input too: exit 2, naming the path and what to do.
"""

from __future__ import annotations

import sys
import traceback

import typer

from unlearn_cli.errors import MAX_LINE, UnlearnError, one_line
from unlearn_cli.ops.paths import ENVIRONMENTAL, os_error_message


def fail(command: str, exc: BaseException, debug: bool) -> typer.Exit:
    """Print the one-line message for ``exc`` and return the typer.Exit to raise."""
    if debug:
        traceback.print_exc(file=sys.stderr)
    if isinstance(exc, UnlearnError):
        code = exc.exit_code
        message = exc.terminal_message()  # may name the IDs (private detail): stderr only
    elif isinstance(exc, MemoryError):
        code, message = 1, "out of memory"
    elif isinstance(exc, OSError) and exc.errno in ENVIRONMENTAL:
        code, message = 2, one_line(os_error_message(exc))
    else:
        code = 1
        message = f"internal error: {type(exc).__name__}: {one_line(str(exc))} (rerun with --debug for a traceback)"
    prefix = f"unlearn {command}: error: "
    print(prefix + one_line(message, MAX_LINE - len(prefix)), file=sys.stderr)
    return typer.Exit(code)

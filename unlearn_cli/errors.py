"""Known failures and the exit codes they map to (DESIGN.md "Exit codes").

Library code raises these; the CLI turns them into a one-line message and an
exit code. Anything else is an internal error (exit 1).
"""

from __future__ import annotations


class UnlearnError(Exception):
    """Base class: a failure the tool understands and can explain in one line."""

    exit_code = 1


class BadInput(UnlearnError):
    """Usage error or bad input: a file, a key, an ID, an option (exit 2)."""

    exit_code = 2


class GateFailed(UnlearnError):
    """A verification gate failed (exit 3)."""

    exit_code = 3


class LockHeld(UnlearnError):
    """Another run holds the lock on the output (exit 4)."""

    exit_code = 4


def one_line(message: str) -> str:
    """Collapse a message onto one line: the error contract is one line."""
    return " ".join(str(message).split())

"""Known failures and the exit codes they map to (DESIGN.md "Exit codes"), and the one message sanitiser.

Library code raises these; the CLI turns them into a one-line message and an
exit code. Anything else is an internal error (exit 1).

Every message that reaches stderr, a report or a ``.reason`` file passes
``one_line``: control characters (C0, DEL, C1, Unicode line separators and
bidirectional overrides) in a file name or an ID are shown escaped (``\\n``,
``\\x1b``), so a hostile queue file name can neither split a line nor drive
the terminal, and the message is capped at ``MAX_MESSAGE`` characters.

An error may carry ``private`` detail, the raw IDs it is about: the terminal
shows it (``terminal_message``), while ``str(exc)`` (what reports, the ledger
and ``.reason`` files record) never holds it.
"""

from __future__ import annotations

import re
from typing import Iterable

#: Longest message after sanitising; with "unlearn debug-labels: warning: " a line stays under 300.
MAX_MESSAGE = 260
#: Longest stderr line, prefix included (``fail`` caps the message to what the prefix leaves).
MAX_LINE = 299

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 (tab, newline and CR included), DEL, C1, line/paragraph separators, bidi embeddings/overrides/isolates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# An absolute path: when a message is too long, its folders are shortened before anything is cut.
_PATH = re.compile(r"(?<![\w.~-])/[^\s'\";,()]+")
# A word this long is shortened in its middle before a long message is cut.
_LONG_WORD = re.compile(r"\S{56,}")
# A line break followed by indentation: a multi-line library message (YAML, JSON), joined with a space.
_CONTINUATION = re.compile(r"[ \t]*(?:\r\n|\r|\n)[ \t]+")


class UnlearnError(Exception):
    """Base class: a failure the tool understands and can explain in one line."""

    exit_code = 1

    def __init__(self, *args: object, private: str | None = None):
        super().__init__(*args)
        self.private = private

    def terminal_message(self) -> str:
        """The message for stderr: ``str(self)`` plus the private detail (raw IDs), if any."""
        return f"{self}: {self.private}" if self.private else str(self)


class BadInput(UnlearnError):
    """Usage error or bad input: a file, a key, an ID, an option (exit 2)."""

    exit_code = 2


class GateFailed(UnlearnError):
    """A verification gate failed (exit 3)."""

    exit_code = 3


class LockHeld(UnlearnError):
    """Another run holds the lock on the output (exit 4)."""

    exit_code = 4


def _escape(match: re.Match) -> str:
    char = match.group(0)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character shown escaped (``\\n``, ``\\x1b``, ``\\u202e``)."""
    return _CONTROL.sub(_escape, str(text))


def _short_path(match: re.Match) -> str:
    parts = match.group(0).split("/")
    return match.group(0) if len(parts) <= 4 else ".../" + "/".join(parts[-2:])


def cap(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters in the middle (a message's end often says what to do), saying so."""
    if len(text) <= limit:
        return text
    text = _PATH.sub(_short_path, text)
    if len(text) <= limit:
        return text
    # Long single words (a path's long folder, a pasted token) lose their middles before the
    # message does: the words around them (a PID, what to do) are what the reader needs.
    text = _LONG_WORD.sub(lambda m: f"{m.group(0)[:16]}...[{len(m.group(0))} chars, cut]...{m.group(0)[-28:]}", text)
    if len(text) <= limit:
        return text
    marker = f" ...[{len(text)} chars, cut]... "
    room = max(limit - len(marker), 0)
    head, tail = room // 2, room - room // 2
    return text[:head] + marker + (text[-tail:] if tail else "")


def one_line(message: object, limit: int = MAX_MESSAGE) -> str:
    """A message as one safe, short line: the error contract of every command.

    Indented continuation lines of library messages are joined with a space;
    any other control character (a newline inside a file name, an ESC) is
    shown escaped; runs of spaces collapse; the result is capped at ``limit``.
    """
    text = _CONTINUATION.sub(" ", str(message)).strip()
    text = " ".join(escape_controls(text).split(" "))
    text = re.sub(r" {2,}", " ", text)
    return cap(text, limit)


def name_some(items: Iterable[object], shown: int = 5) -> str:
    """The first ``shown`` items for a message, then how many more: ``a, b, c (and 7 more)``."""
    items = list(items)
    text = ", ".join(escape_controls(str(i)) for i in items[:shown])
    return text + (f" (and {len(items) - shown} more)" if len(items) > shown else "")

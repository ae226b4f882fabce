"""Request (ids) files: reading, merging, checking against a split, writing.

A request file names the training records to forget (DESIGN.md "Request (ids)
file"). The rules, chosen so that files made by hand, by spreadsheets, by
``sort -u`` and by Windows editors all read the same:

* The bytes must be UTF-8. One leading byte-order mark (EF BB BF) is dropped.
  Anything else that is not UTF-8 is an error naming the first bad byte offset
  (counted in the raw file, BOM included).
* Lines end in ``\\n``, ``\\r\\n`` or a lone ``\\r``; nothing else splits a line
  (so a form feed or U+2028 inside an ID stays in it).
* Each line is stripped of surrounding whitespace (``str.strip``). An empty
  line, or one whose first non-space character is ``#``, is ignored. Whatever
  remains is one ID, internal spaces included.
* IDs are strings, compared exactly (integer ids are written in decimal).
  Repeats collapse onto the first occurrence; each repeated ID is reported
  once in ``Request.duplicates`` so the caller can warn about it.
* A file with no IDs at all is an error: an empty deletion request is almost
  always a mistake (wrong file, failed export) and must not "succeed".
* ``-`` means standard input. A file literally named ``-`` can be read as
  ``./-``. A file must be a regular file (no FIFO or device) of at most
  ``ops.inputs.IDS_LIMIT`` bytes; stdin is read up to the same bound. A line
  longer than ``MAX_ID_CHARS`` is an error naming its line number.

Several request files merge into one request (``read_requests``): IDs stay
unique across files in first-seen order and an ID repeated across files counts
as a duplicate. The merged ``sha256`` is the sha256 of the concatenated
per-file sha256 hex digests, in the order given, so that it identifies the
exact set of inputs; with a single file it is that file's own sha256 (what
``sha256sum`` prints), because there is nothing to merge.

Raw IDs never go into checkpoints; ``id_set_digest`` here and
``ops.digests.id_digest`` (one ID) give stable, order-independent
fingerprints instead.

This module must stay cheap to import (no torch): fast commands use it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from numbers import Integral
from typing import BinaryIO

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.inputs import IDS_LIMIT, human_size, read_input, show_path

__all__ = [
    "Request",
    "parse_ids",
    "read_ids",
    "read_requests",
    "check_known",
    "id_set_digest",
    "format_ids",
]

STDIN = "-"
STDIN_SOURCE = "<stdin>"
#: An error names at most MAX_NAMED IDs, each cut to MAX_SHOWN_ID characters, within _NAMES_BUDGET.
MAX_NAMED, MAX_SHOWN_ID, _NAMES_BUDGET = 10, 32, 160
#: Longest ID accepted (e-mail addresses and UUIDs are far shorter): longer is a wrong file.
MAX_ID_CHARS = 1024

_BOM = b"\xef\xbb\xbf"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Request:
    """A parsed deletion request: what to forget and where it came from."""

    ids: tuple[str, ...]
    """Unique IDs, in first-seen order."""
    duplicates: tuple[str, ...]
    """IDs that appeared more than once, each listed once (order of first repeat)."""
    source: str
    """The path as given, ``<stdin>``, or several joined with ``", "``."""
    sha256: str
    """Hex sha256 of the raw bytes read (see the module docstring for merges)."""


def _show_source(source: str) -> str:
    """A source name that cannot break the one-line error contract."""
    return source if source in (STDIN_SOURCE, "<memory>") else show_path(source)


def _show_id(record_id: str) -> str:
    """An ID as it appears in a message: plain when unambiguous, else quoted; long ones cut."""
    plain = record_id.isprintable() and "," not in record_id
    if plain and record_id and record_id == record_id.strip():
        shown = record_id
    else:
        shown = repr(record_id)
    return shown if len(shown) <= MAX_SHOWN_ID else shown[: MAX_SHOWN_ID - 3] + "..."


def _name_some(ids: Sequence[str]) -> str:
    """The first MAX_NAMED IDs (within a character budget), saying when the list is cut short."""
    shown: list[str] = []
    for record_id in ids[:MAX_NAMED]:
        text = _show_id(record_id)
        if shown and sum(len(s) + 2 for s in shown) + len(text) > _NAMES_BUDGET:
            break
        shown.append(text)
    if len(shown) < len(ids):
        count = "ten" if len(shown) == MAX_NAMED else str(len(shown))
        return ", ".join(shown) + f", ... (first {count} shown)"
    return ", ".join(shown)


def _dedupe(ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """(unique in first-seen order, repeated ones each once)."""
    seen: set[str] = set()
    unique: list[str] = []
    repeated: dict[str, None] = {}
    for record_id in ids:
        if record_id in seen:
            repeated.setdefault(record_id, None)
        else:
            seen.add(record_id)
            unique.append(record_id)
    return unique, list(repeated)


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text of a request, BOM dropped; a clear error otherwise."""
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "; it looks like UTF-16, save it as UTF-8"
        raise BadInput(
            f"{_show_source(source)}: not UTF-8 text (byte offset {skip + exc.start}){hint}"
        ) from None


def _lines_to_ids(text: str, source: str) -> list[str]:
    """Every ID line of a decoded request, in order, repeats kept; an overlong line is an error."""
    ids = []
    for number, line in enumerate(_LINE_BREAK.split(text), 1):
        item = line.strip()
        if item and not item.startswith("#"):
            if len(item) > MAX_ID_CHARS:
                raise BadInput(f"{_show_source(source)}: line {number} is {len(item):,} characters long, "
                               f"more than an ID may be ({MAX_ID_CHARS}): {_show_id(item)}")
            ids.append(item)
    return ids


def _parse(raw: bytes, source: str) -> list[str]:
    """Every ID occurrence in one request file, repeats kept; empty is an error."""
    found = _lines_to_ids(_decode(raw, source), source)
    if not found:
        raise BadInput(f"{_show_source(source)}: the request holds no IDs")
    return found


def _request(found: list[str], source: str, sha256: str) -> Request:
    """A Request from every ID occurrence, repeats collapsed and remembered."""
    unique, repeated = _dedupe(found)
    return Request(ids=tuple(unique), duplicates=tuple(repeated), source=source, sha256=sha256)


def parse_ids(data: bytes, source: str = "<memory>") -> Request:
    """Parse the raw bytes of one request file; ``source`` names it in errors."""
    raw = bytes(data)
    return _request(_parse(raw, source), source, hashlib.sha256(raw).hexdigest())


def _read_stdin(stdin: BinaryIO | None) -> bytes:
    """All of standard input as bytes (a text stream is read through its buffer)."""
    stream = stdin
    if stream is None:
        if sys.stdin is None:
            raise BadInput(f"{STDIN_SOURCE}: no standard input to read")
        stream = sys.stdin.buffer
    stream = getattr(stream, "buffer", stream)
    try:
        data = stream.read(IDS_LIMIT + 1)  # bounded: stdin may be /dev/zero
    except OSError as exc:
        raise BadInput(f"{STDIN_SOURCE}: cannot read ({exc.strerror or exc})") from None
    if len(data) > IDS_LIMIT:
        raise BadInput(f"{STDIN_SOURCE}: request is larger than the {human_size(IDS_LIMIT)} limit")
    if isinstance(data, str):  # a StringIO handed in by a test or an embedding caller
        data = data.encode("utf-8")
    return data


def _load(path: str | os.PathLike[str], stdin: BinaryIO | None) -> tuple[bytes, str]:
    """(raw bytes, source name) of one request; ``-`` is standard input."""
    name = os.fsdecode(path)
    if name == STDIN:
        return _read_stdin(stdin), STDIN_SOURCE
    return read_input(name, "request file", IDS_LIMIT), name  # a regular file, bounded


def read_ids(path: str | os.PathLike[str], stdin: BinaryIO | None = None) -> Request:
    """Read one request file; ``-`` reads ``stdin`` (``sys.stdin.buffer`` by default)."""
    raw, source = _load(path, stdin)
    return parse_ids(raw, source)


def read_requests(
    paths: Sequence[str | os.PathLike[str]], stdin: BinaryIO | None = None
) -> Request:
    """Read several request files as one request (see the module docstring).

    Each file must hold IDs of its own: an empty one among several is still a mistake.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]  # one path passed bare: not a sequence of one-character names
    if not paths:
        raise BadInput("no request files given")
    if sum(os.fsdecode(p) == STDIN for p in paths) > 1:
        raise BadInput("'-' (standard input) can be given only once")
    found: list[str] = []
    sources: list[str] = []
    digests: list[str] = []
    for path in paths:
        raw, source = _load(path, stdin)
        found.extend(_parse(raw, source))
        sources.append(source)
        digests.append(hashlib.sha256(raw).hexdigest())
    if len(digests) == 1:
        sha256 = digests[0]
    else:
        sha256 = hashlib.sha256("".join(digests).encode("ascii")).hexdigest()
    return _request(found, ", ".join(sources), sha256)


def _as_lookup(ids: Collection[str], what: str) -> AbstractSet[str]:
    """A set for fast membership, refusing non-string IDs (a silent mismatch otherwise)."""
    lookup = ids if isinstance(ids, AbstractSet) else set(ids)
    for sample in lookup:
        if not isinstance(sample, str):
            raise TypeError(f"{what} must hold str IDs, got {type(sample).__name__}")
        break
    return lookup


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def check_known(
    ids: Iterable[str],
    train_ids: Collection[str],
    test_ids: Collection[str] = (),
    ignore_unknown: bool = False,
) -> tuple[list[str], list[str]]:
    """Split requested IDs into (known, skipped) against the train split.

    Forgetting a test record is never meaningful and suggests the wrong data set,
    so test-split IDs are an error even with ``ignore_unknown``.
    """
    requested, _ = _dedupe(ids)
    for record_id in requested:
        if not isinstance(record_id, str):
            raise TypeError(f"requested IDs must be str, got {type(record_id).__name__}")
    train = _as_lookup(train_ids, "train_ids")
    test = _as_lookup(test_ids, "test_ids")

    in_test = [i for i in requested if i in test]
    if in_test:
        n = len(in_test)
        raise BadInput(
            f"{n} requested {_plural(n, 'ID belongs', 'IDs belong')} to the test split, not train",
            private=_name_some(in_test),  # the IDs reach the terminal only, never a report file
        )
    known = [i for i in requested if i in train]
    unknown = [i for i in requested if i not in train]
    if unknown and not ignore_unknown:
        n = len(unknown)
        raise BadInput(
            f"{n} requested {_plural(n, 'ID is', 'IDs are')} not in the train split "
            f"(--ignore-unknown skips {_plural(n, 'it', 'them')})",
            private=_name_some(unknown),
        )
    if not known:
        raise BadInput("none of the requested IDs is in the train split")
    return known, unknown


def id_set_digest(ids: Iterable[str]) -> str:
    """Hex sha256 of a set of IDs, independent of order and repeats.

    The IDs are deduplicated, sorted by code point and joined with ``\\n`` before
    hashing, so any tool can recompute it (``sort -u | head -c -1 | sha256sum``
    in the C locale).
    """
    return hashlib.sha256("\n".join(sorted(set(ids))).encode("utf-8")).hexdigest()


def _why_unwritable(record_id: str) -> str | None:
    """Why an ID would not read back unchanged from an ids file, or None."""
    if not record_id:
        return "it is empty"
    if "\n" in record_id or "\r" in record_id:
        return "it contains a line break"
    if record_id != record_id.strip():
        return "it has leading or trailing whitespace"
    if record_id.startswith("#"):
        return "it starts with '#' and would read as a comment"
    if record_id.startswith("\ufeff"):
        return "it starts with a byte-order mark"
    try:
        record_id.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not encodable as UTF-8"
    return None


def _as_id(value: object) -> str:
    """An ID as a string; integer ids (Python or numpy) are written in decimal."""
    if isinstance(value, str):
        return value
    if isinstance(value, Integral) and not isinstance(value, bool):
        return str(int(value))
    raise TypeError(f"IDs must be str or int, got {type(value).__name__}")


def format_ids(ids: Iterable[str], header: str | None = None) -> str:
    """Text of an ids file that ``parse_ids`` reads back as exactly ``ids``.

    ``header`` becomes ``#`` comment lines at the top. Repeats are written once.
    An ID that could not survive the round trip is refused rather than altered.
    """
    unique, _ = _dedupe(_as_id(v) for v in ids)
    if not unique:
        raise BadInput("no IDs to write: an ids file must hold at least one ID")
    for record_id in unique:
        why = _why_unwritable(record_id)
        if why is not None:
            raise BadInput(f"cannot write ID {record_id!r} to an ids file: {why}")
    lines: list[str] = []
    if header:
        for line in _LINE_BREAK.split(header):
            line = line.rstrip()
            lines.append(f"# {line}" if line else "#")
    lines.extend(unique)
    return "\n".join(lines) + "\n"

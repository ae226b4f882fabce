"""The requests of one run: request files read and merged, or queue files screened one by one.

A refused queue file's reason goes into the ledger, the report and
``failed/NAME.reason``, so it names no raw ID: it names the request file's
line numbers and counts (``id_problem``). The terminal may name the IDs
themselves (the error's ``private`` detail).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Collection, Sequence

from unlearn_cli.data.ids import Request, parse_ids, read_ids
from unlearn_cli.errors import BadInput, escape_controls, one_line

#: How many line numbers a reason names before it says how many more.
SHOWN_LINES = 8
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class RequestFile:
    """One request file of a run: what the ledger says about it."""

    file: str
    sha256: str | None
    ids: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "ids": self.ids}


@dataclass
class Requests:
    """The requests of one run, merged, plus the queue files refused."""

    request: Request | None                  # merged; None when no file was accepted
    files: list[RequestFile]
    rejected: list[tuple[Any, str]] = field(default_factory=list)   # (QueuedFile, reason)
    accepted: list[Any] = field(default_factory=list)               # QueuedFile, queue mode only

    @property
    def requested(self) -> int:
        """How many distinct IDs the accepted files ask for."""
        return len(self.request.ids) if self.request is not None else 0


def merge_requests(parts: Sequence[Request]) -> Request:
    """Several parsed request files as one (same rules as data.ids.read_requests)."""
    seen: dict[str, None] = {}
    repeated: dict[str, None] = {}
    for part in parts:
        for record_id in part.duplicates:
            repeated.setdefault(record_id, None)
        for record_id in part.ids:
            if record_id in seen:
                repeated.setdefault(record_id, None)
            seen.setdefault(record_id, None)
    if len(parts) == 1:
        sha = parts[0].sha256
    else:
        sha = hashlib.sha256("".join(p.sha256 for p in parts).encode("ascii")).hexdigest()
    return Request(ids=tuple(seen), duplicates=tuple(repeated), source=", ".join(p.source for p in parts),
                   sha256=sha)


def read_request_files(paths: Sequence[str]) -> Requests:
    """Positional request files: any bad one fails the whole run (nothing written)."""
    if not paths:
        raise BadInput("no request files given (pass IDS files, '-' for stdin, or --queue DIR)")
    if sum(os.fsdecode(p) == "-" for p in paths) > 1:
        raise BadInput("'-' (standard input) can be given only once")
    parts = [read_ids(p) for p in paths]
    files = [RequestFile(p.source, p.sha256, len(p.ids)) for p in parts]
    return Requests(merge_requests(parts), files)


def _id_lines(raw: bytes | None) -> dict[str, list[int]]:
    """Each ID of a request file -> the 1-based line numbers it stands on (the ids-file rules)."""
    if raw is None:
        return {}
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    where: dict[str, list[int]] = {}
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        item = line.strip()
        if item and not item.startswith("#"):
            where.setdefault(item, []).append(number)
    return where


def _lines_text(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:SHOWN_LINES])
    more = f" and {len(numbers) - SHOWN_LINES} more" if len(numbers) > SHOWN_LINES else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def id_problem(ids: Sequence[str], train: Collection[str], test: Collection[str], ignore_unknown: bool,
               source: str, raw: bytes | None = None) -> BadInput | None:
    """Why these IDs cannot be removed, or None; the message names line numbers of ``source``, never an ID.

    The IDs themselves ride along as the error's ``private`` detail, shown on the terminal only.
    """
    in_test = [i for i in ids if i in test]
    unknown = [] if ignore_unknown else [i for i in ids if i not in train and i not in test]
    known = any(i in train for i in ids)
    if not in_test and not unknown and known:
        return None
    one = len(in_test or unknown) == 1
    bad, what, hint = (in_test, f"{'belongs' if one else 'belong'} to the test split, not train", "") if in_test \
        else (unknown, f"{'is' if one else 'are'} not in the train split", "; --ignore-unknown skips them")
    if not bad:
        return BadInput(f"{one_line(source)}: none of the requested IDs is in the train split")
    where = _id_lines(raw)
    numbers = sorted(n for i in bad for n in where.get(i, [])[:1])
    place = f"{_lines_text(numbers)} of {one_line(source)}" if numbers else f"in {one_line(source)}"
    shown = ", ".join(escape_controls(repr(i) if not i.isprintable() else i) for i in bad[:10])
    return BadInput(f"{len(bad)} requested ID{'s' if len(bad) > 1 else ''} {what} ({place}{hint})",
                    private=shown + (", ... (first ten shown)" if len(bad) > 10 else ""))


def screen_queue(items: Sequence[Any], dataset: Any, ignore_unknown: bool) -> Requests:
    """Queue files one by one: a bad file is refused on its own, the others go ahead."""
    train, test = set(dataset.train_ids), set(dataset.test_ids)
    parts, files, accepted, rejected = [], [], [], []
    for item in items:
        if item.raw is None:
            rejected.append((item, one_line(f"{item.name}: cannot read the request file")))
            continue
        try:
            part = parse_ids(item.raw, item.name)
            problem = id_problem(part.ids, train, test, ignore_unknown, item.name, item.raw)
            if problem is not None:
                raise problem
        except BadInput as exc:
            rejected.append((item, one_line(str(exc))))
            continue
        parts.append(part)
        files.append(RequestFile(item.name, item.sha256, len(part.ids)))
        accepted.append(item)
    return Requests(merge_requests(parts) if parts else None, files, rejected, accepted)

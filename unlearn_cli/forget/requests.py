"""The requests of one run: request files read and merged, or queue files screened one by one."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from unlearn_cli.data.ids import Request, check_known, parse_ids, read_ids
from unlearn_cli.errors import BadInput


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


def screen_queue(items: Sequence[Any], dataset: Any, ignore_unknown: bool) -> Requests:
    """Queue files one by one: a bad file is refused on its own, the others go ahead."""
    train, test = set(dataset.train_ids), set(dataset.test_ids)
    parts, files, accepted, rejected = [], [], [], []
    for item in items:
        if item.raw is None:
            rejected.append((item, f"{item.path}: cannot read the request file"))
            continue
        try:
            part = parse_ids(item.raw, str(item.path))
            check_known(part.ids, train, test, ignore_unknown)
        except BadInput as exc:
            rejected.append((item, str(exc)))
            continue
        parts.append(part)
        files.append(RequestFile(item.name, item.sha256, len(part.ids)))
        accepted.append(item)
    return Requests(merge_requests(parts) if parts else None, files, rejected, accepted)

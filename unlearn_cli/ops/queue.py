"""A queue directory of request files, for unattended runs (``forget --queue DIR``).

Layout::

    DIR/*.txt          waiting requests (names starting with '.' are ignored:
                       write a file as .name.tmp, then rename it to name.txt)
    DIR/done/          requests applied (or found already applied)
    DIR/failed/        requests refused, each with NAME.reason (one line)
    DIR/.lock          held while a run works on the queue

A request file leaves DIR only after the checkpoint and the ledger line that
account for it are durable, so a crash leaves it waiting for the next run.
A file whose bytes changed after they were read (still being written) is left
in DIR for the next run, which skips the IDs already applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.atomic import fsync_dir

DONE = "done"
FAILED = "failed"
LOCK_NAME = ".lock"


@dataclass
class QueuedFile:
    path: Path
    raw: bytes | None          # None when the file could not be read
    sha256: str | None

    @property
    def name(self) -> str:
        return self.path.name


def check_queue(directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    if not directory.exists():
        raise BadInput(f"--queue {directory}: no such directory")
    if not directory.is_dir():
        raise BadInput(f"--queue {directory}: not a directory")
    return directory


def remove_stale_temps(directory: Path) -> None:
    """``failed/.NAME.reason.*.tmp``: a reason a killed run was writing. Call with the queue's lock held
    (nobody else writes these names); the temp files of the output and the journal are swept beside them."""
    for path in (directory / FAILED).glob(".*.reason.*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def list_queue(directory: Path) -> list[QueuedFile]:
    """The waiting request files, in name order, with their bytes as read now."""
    found = []
    for path in sorted(directory.glob("*.txt")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            raw = path.read_bytes()
        except OSError:
            raw = None
        found.append(QueuedFile(path, raw, hashlib.sha256(raw).hexdigest() if raw is not None else None))
    return found


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name`` with ``.1``, ``.2``... before its suffix if taken."""
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 1
    while target.exists() or target.with_name(target.name + ".reason").exists():
        target = folder / f"{stem}.{n}{suffix}"
        n += 1
    return target


def unchanged(item: QueuedFile) -> bool:
    try:
        return hashlib.sha256(item.path.read_bytes()).hexdigest() == item.sha256
    except OSError:
        return False


def settle(directory: Path, item: QueuedFile, outcome: str, reason: str | None = None) -> Path | None:
    """Move a request out of the queue into done/ or failed/ (with its reason).

    Returns the new path, or None when the file changed since it was read (left
    in place for the next run) or has already gone.
    """
    if not item.path.exists() or (item.sha256 is not None and not unchanged(item)):
        return None
    folder = directory / outcome
    folder.mkdir(exist_ok=True)
    target = _free_name(folder, item.name)
    if reason is not None:
        from unlearn_cli.ops.atomic import write_text

        write_text(target.with_name(target.name + ".reason"), " ".join(reason.split()) + "\n")
    os.replace(item.path, target)
    fsync_dir(folder)
    fsync_dir(directory)
    return target

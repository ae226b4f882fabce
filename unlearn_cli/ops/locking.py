"""One run at a time per output, ledger and queue: OS-level lock files.

A lock is ``fcntl.flock`` on a small file (``<target>.lock``) holding the
holder's PID, so a second run can say who is in the way. The kernel drops a
flock when its process dies, even on SIGKILL, so a crashed run never leaves a
lock that blocks the next one; the file itself may stay behind and is harmless.
A clean release unlinks the file. Because a waiter may have opened the old file
just before that unlink, a run that wins a lock checks that the path still
names the file it locked, and starts over if not.

Without ``fcntl`` (Windows) locking is not available and runs are not
serialised; the tool says so once rather than pretending.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from unlearn_cli.errors import BadInput, LockHeld
from unlearn_cli.ops.dist import is_main

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: How often a waiting run retries (seconds).
POLL_S = 0.1


def lock_path_for(target: str | os.PathLike) -> Path:
    """``<target>.lock`` beside the file it protects."""
    target = Path(target)
    return target.with_name(target.name + ".lock")


def _holder(path: Path) -> str:
    """The PID written in a held lock file, for the error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "unknown"
    first = text.split()[0] if text else ""
    return first if first.isdigit() else "unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None while someone else holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise BadInput(f"{path}: cannot create lock file (directory '{path.parent}' does not exist)") from None
        except IsADirectoryError:
            raise BadInput(f"{path}: lock path is a directory") from None
        except PermissionError:
            raise BadInput(f"{path}: cannot create lock file (permission denied)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        if _same_file(fd, path):
            return fd
        # The previous holder unlinked the file between our open and our flock.
        os.close(fd)


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)


def _release(fd: int, path: Path) -> None:
    # Unlink while still holding the lock: a waiter that opened this inode
    # notices the path changed and retries on a fresh file.
    with contextlib.suppress(OSError):
        if _same_file(fd, path):
            path.unlink()
    os.close(fd)


def check_wait(wait: float) -> None:
    """``--wait`` is a number of seconds, never negative and never nan.

    nan would never reach the deadline (every comparison with it is false) and
    hang behind a held lock. ``inf`` is allowed and means "until the holder
    finishes": the kernel drops the lock of a process that dies, so it never
    waits on a crashed run.
    """
    if isinstance(wait, bool) or not isinstance(wait, (int, float)):
        raise BadInput(f"--wait must be a number of seconds >= 0, got {str(wait)[:40]!r}")
    if math.isnan(wait) or wait < 0:
        raise BadInput(f"--wait must be >= 0 seconds (a number, or inf to wait for the holder), got {wait}")


@contextlib.contextmanager
def hold_locks(paths: Sequence[str | os.PathLike], wait: float = 0.0, *,
               what: str = "", warn: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold exclusive locks on every lock file in ``paths`` (taken in sorted order).

    Waits up to ``wait`` seconds in total, then raises ``LockHeld`` naming the
    holder's PID. ``what`` names the thing protected in that message.
    """
    check_wait(wait)
    unique = sorted({Path(os.path.abspath(p)) for p in paths})
    if not is_main():  # under torchrun rank 0 holds the locks for the whole job (ops.dist)
        yield
        return
    if fcntl is None:  # pragma: no cover - Windows
        if warn is not None:
            warn("file locking is not available on this platform; do not run two forgets on one output at once")
        yield
        return
    deadline = time.monotonic() + wait
    held: list[tuple[int, Path]] = []
    try:
        for path in unique:
            while True:
                fd = _try_lock(path)
                if fd is not None:
                    _write_pid(fd)
                    held.append((fd, path))
                    break
                if time.monotonic() >= deadline:
                    pid = _holder(path)
                    subject = f"{what}: " if what else ""
                    waited = f" after waiting {wait:g} s" if wait > 0 else ""
                    raise LockHeld(f"{subject}another unlearn run (PID {pid}) holds the lock {path}{waited}; "
                                   "try again later or pass --wait SECONDS")
                time.sleep(POLL_S)
        yield
    finally:
        for fd, path in reversed(held):
            _release(fd, path)

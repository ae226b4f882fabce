"""The one place that writes files: atomically, or not at all.

A file is written to a temporary name in the target directory, flushed and
fsynced, optionally verified, then renamed over the target (rename is atomic
within one file system) and the directory entry fsynced. Any failure removes
the temporary file and leaves the previous target exactly as it was. A
failure the user can fix (read-only folder, permission denied, disk full) is a
``BadInput`` naming the path (exit 2), not an internal error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.dist import is_main
from unlearn_cli.ops.paths import ENVIRONMENTAL, os_error_message


def fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    The caller writes (and may verify) the temporary file inside the ``with``
    block; an exception inside the block deletes it and re-raises.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise BadInput(f"{target}: output directory '{directory}' does not exist")
    if target.is_dir():
        raise BadInput(f"{target}: is a directory, not a file")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        _environmental(exc, target)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as fh:
                fh.flush()
                os.fsync(fh.fileno())
            # mkstemp creates 0600 files; publish with the mode a plain open() would give.
            os.chmod(tmp, _publish_mode(target))
            os.replace(tmp, target)
        except OSError as exc:
            _environmental(exc, target)
            raise
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _environmental(exc: OSError, target: Path) -> None:
    """Re-raise a failure the user can fix as ``BadInput`` naming ``target``; anything else stays as it is."""
    if exc.errno in ENVIRONMENTAL:
        raise BadInput(os_error_message(exc, target)) from None


def write_bytes(
    target: str | os.PathLike,
    data: bytes,
    verify: Callable[[Path], None] | None = None,
) -> str:
    """Atomically write ``data`` to ``target``; return its sha256 hex.

    ``verify`` is called on the fsynced temporary file before the rename; if it
    raises, nothing is published. Under torchrun only rank 0 writes (``ops.dist``);
    the other ranks get the same sha256 and write nothing.
    """
    if not is_main():
        return hashlib.sha256(data).hexdigest()
    with atomic_path(target) as tmp:
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno in ENVIRONMENTAL:
                raise BadInput(os_error_message(exc, target)) from None
            raise BadInput(f"{target}: cannot write ({exc.strerror or exc})") from None
        if verify is not None:
            verify(tmp)
    return hashlib.sha256(data).hexdigest()


def write_text(target: str | os.PathLike, text: str) -> str:
    return write_bytes(target, text.encode("utf-8"))

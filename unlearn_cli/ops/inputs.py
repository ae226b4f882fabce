"""Opening input files safely: regular files only, bounded reads, one-line errors.

Every file the tool reads (checkpoints, sidecars, manifests, data files,
request files, ``--config`` files) goes through here, so that hostile paths
fail the same way (issue #15, DESIGN.md "Exit codes": exit 2, one line):

* nothing blocks: the path is ``stat``-ed first (a device is never opened) and
  then opened with ``O_NONBLOCK`` and checked again with ``fstat``; a FIFO, a
  device such as ``/dev/zero``, a socket or a directory where a file is
  expected is refused, naming the path and what it is;
* symlinks are followed, but a loop (ELOOP) or a dangling link is an error;
* reads are bounded by a per-kind limit (below), checked against the size
  ``fstat`` reports and again while reading (a ``/proc`` file may lie);
* permission denied, I/O errors and the like become :class:`BadInput`.

Limits, one per kind of file, chosen far above any honest input:

============================  ========  ==============================================
kind                          limit     why
============================  ========  ==============================================
request (ids) file / stdin    64 MiB    about three million 20-character IDs per file
manifest, ``--config`` YAML   1 MiB     hand-written text (~20,000 lines)
checkpoint header (JSON)      100 MB    safetensors' own limit on its header
checkpoint                    16 GiB    read whole into memory; a larger file is a mistake
data file                     64 GiB    read by numpy/safetensors; bound for a clear message
============================  ========  ==============================================

This module imports neither torch nor numpy: fast commands use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from unlearn_cli.errors import BadInput

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
IDS_LIMIT = 64 * MiB
YAML_LIMIT = 1 * MiB
CHECKPOINT_HEADER_LIMIT = 100_000_000
CHECKPOINT_LIMIT = 16 * GiB
DATA_LIMIT = 64 * GiB

#: Longest path shown in a message (its tail is kept: the file name matters most).
_MAX_SHOWN_PATH = 120
_CHUNK = 1 << 20

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def show_path(path: str | os.PathLike) -> str:
    """A path for a one-line message: control characters escaped, long paths cut to their tail."""
    text = os.fsdecode(path)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > _MAX_SHOWN_PATH:
        text = "..." + text[-(_MAX_SHOWN_PATH - 3):]
    return text


def excerpt(value: object, limit: int = 40) -> str:
    """``repr`` of a value from a file, cut to ``limit`` characters: enough to recognise it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def human_size(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


def _kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _os_failure(path: str | os.PathLike, what: str, exc: OSError) -> BadInput:
    """The one-line BadInput for an OSError met while opening ``path``."""
    shown = show_path(path)
    code = exc.errno
    if code == errno.ENOENT:
        if os.path.islink(path):
            return BadInput(f"{shown}: {what} is a dangling symbolic link (its target does not exist)")
        return BadInput(f"{shown}: {what} not found (no such {what})")
    if code == errno.ELOOP:
        return BadInput(f"{shown}: {what} is a symbolic link loop")
    if code in (errno.EACCES, errno.EPERM):
        return BadInput(f"{shown}: cannot read {what}: permission denied")
    if code == errno.ENOTDIR:
        return BadInput(f"{shown}: {what} not found (a parent of it is not a directory)")
    if code == errno.ENXIO:
        return BadInput(f"{shown}: {what} is a socket or device, not a regular file")
    if code == errno.EISDIR:
        return BadInput(f"{shown}: {what} is a directory, not a regular file")
    return BadInput(f"{shown}: cannot read {what} ({exc.strerror or type(exc).__name__})")


def _refuse_kind(path: str | os.PathLike, what: str, mode: int) -> BadInput:
    return BadInput(f"{show_path(path)}: {what} is {_kind_of(mode)}, not a regular file")


def _too_big(path: str | os.PathLike, what: str, size: int | None, limit: int) -> BadInput:
    have = f" ({human_size(size)})" if size is not None else ""
    return BadInput(f"{show_path(path)}: {what} is larger than the {human_size(limit)} limit{have}")


def check_regular(path: str | os.PathLike, what: str, limit: int | None = None) -> int:
    """Check that ``path`` names a readable regular file (within ``limit``); return its size.

    For readers that must be given a path (safetensors' memory map): nothing is
    read, but a FIFO or device never reaches them.
    """
    with open_input(path, what, limit) as (_, size):
        return size


@contextlib.contextmanager
def open_input(path: str | os.PathLike, what: str,
               limit: int | None = None) -> Iterator[tuple[BinaryIO, int]]:
    """Open a regular file for reading without ever blocking; yield (binary file, size).

    ``what`` names the kind of file in messages ("checkpoint", "manifest").
    """
    try:
        mode = os.stat(path).st_mode  # follows symlinks; a device is refused before it is opened
    except OSError as exc:
        raise _os_failure(path, what, exc) from None
    except ValueError:  # an embedded NUL byte
        raise BadInput(f"{show_path(path)}: not a valid path") from None
    if not stat.S_ISREG(mode):
        raise _refuse_kind(path, what, mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_failure(path, what, exc) from None
    handle = os.fdopen(fd, "rb")
    with handle:
        info = os.fstat(fd)  # the file may have been swapped since the stat above
        if not stat.S_ISREG(info.st_mode):
            raise _refuse_kind(path, what, info.st_mode)
        if limit is not None and info.st_size > limit:
            raise _too_big(path, what, info.st_size, limit)
        yield handle, info.st_size


def read_prefix(handle: BinaryIO, n: int, path: str | os.PathLike, what: str) -> bytes:
    """The next ``n`` bytes (fewer at the end of the file): a header, without reading the rest."""
    parts: list[bytes] = []
    total = 0
    try:
        while total < n:
            block = handle.read(min(_CHUNK, n - total))
            if not block:
                break
            parts.append(block)
            total += len(block)
    except OSError as exc:
        raise BadInput(f"{show_path(path)}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    return b"".join(parts)


def read_limited(handle: BinaryIO, limit: int, path: str | os.PathLike, what: str) -> bytes:
    """Read to the end, but never more than ``limit`` bytes (one more byte proves the excess)."""
    data = read_prefix(handle, limit + 1, path, what)
    if len(data) > limit:
        raise _too_big(path, what, None, limit)
    return data


def read_input(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them; every failure a one-line BadInput."""
    with open_input(path, what, limit) as (handle, _):
        return read_limited(handle, limit, path, what)


def resolve_input(path: str | os.PathLike, what: str) -> Path:
    """``path`` made absolute with symlinks followed; a symlink loop is a BadInput, not a crash."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError("Symlink loop ...")
        raise BadInput(f"{show_path(path)}: {what} is a symbolic link loop") from None


def brief(exc: BaseException, limit: int = 100) -> str:
    """The first line of a library's error message, cut short, control characters escaped.

    Parsers' messages may quote the input; this keeps at most a fragment of it.
    """
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."

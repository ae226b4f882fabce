"""Output-path safety: no output is an input or another output, none is replaced without ``--force``.

Every writing command checks its outputs here before any work (DESIGN.md: "No
command overwrites an existing output without --force; no output path may
equal an input path"):

* ``check_output``: the folder exists and is writable, the path is not a
  folder, and an existing file is refused unless the command may replace it;
* ``check_distinct``: each output against every input and every other output,
  following symlinks (``os.path.realpath``) and hard links (``os.path.samefile``
  where both exist); a collision names both.

``os_error_message`` turns an ``OSError`` the user can fix (read-only folder,
permission denied, disk full) into one line naming the path and what to do.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable, Sequence

from unlearn_cli.errors import BadInput

#: (what the user calls it, path): "--report", "input checkpoint", "data file"...
Named = tuple[str, "str | os.PathLike"]

_REASONS = {
    errno.EACCES: ("permission denied", "fix its permissions or choose another folder"),
    errno.EPERM: ("operation not permitted", "the folder or file may be immutable; choose another folder"),
    errno.EROFS: ("read-only file system", "choose a folder on a writable file system"),
    errno.ENOSPC: ("no space left on device", "free some space and run again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run again"),
}
#: errno values that are the user's to fix (exit 2), not the tool's (exit 1).
ENVIRONMENTAL = frozenset(_REASONS)


class PathCollision(BadInput):
    """An output path is an input or another output; ``labels`` are the options involved."""

    def __init__(self, message: str, labels: Sequence[str]):
        super().__init__(message)
        self.labels = tuple(labels)


def os_error_message(exc: OSError, path: "str | os.PathLike | None" = None) -> str:
    """One line for an environmental ``OSError``: the path, the reason, what to do."""
    where = path if path is not None else (exc.filename or "output")
    reason, advice = _REASONS.get(exc.errno, (exc.strerror or type(exc).__name__, "check the path"))
    return f"cannot write {where}: {reason}; {advice}"


def folder_of(path: "str | os.PathLike") -> Path:
    parent = Path(path).parent
    return parent if str(parent) else Path(".")


def same_file(a: "str | os.PathLike", b: "str | os.PathLike") -> bool:
    """True when ``a`` and ``b`` name one file: same real path (symlinks followed) or same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the real paths decided
        return False


def check_output(label: str, path: "str | os.PathLike", *, replace: bool = False) -> None:
    """An output can be written at ``path``: its folder exists and is writable, it is not a folder,
    and it does not exist unless ``replace`` (``--force``, ``--in-place``, an append-only ledger)."""
    path = Path(path)
    folder = folder_of(path)
    if not folder.is_dir():
        raise BadInput(f"{label} {path}: directory '{folder}' does not exist")
    if path.is_dir():
        raise BadInput(f"{label} {path}: is a directory, not a file")
    check_writable_folder(f"{label} {path}:", folder)
    if not replace and os.path.lexists(path):
        raise BadInput(f"{label} {path} already exists; pass --force to replace it")


def check_writable_folder(label: str, folder: "str | os.PathLike") -> None:
    """New files can be made in ``folder`` (modes, read-only mounts and immutable folders all count)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_fs(Path(folder)) else "permission denied"
        raise BadInput(f"{label} cannot write in '{folder}' ({reason}); "
                       "choose a writable folder or fix its permissions")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def check_distinct(inputs: Iterable[Named], outputs: Iterable[Named]) -> None:
    """No output is an input, and no two outputs are one file (``None`` paths are skipped)."""
    inputs = [(name, p) for name, p in inputs if p is not None and str(p) != "-"]
    seen: list[Named] = []
    for label, path in outputs:
        if path is None:
            continue
        for name, other in inputs:
            if same_file(path, other):
                raise PathCollision(f"{label} {path} is the {name}{_also(path, other)}; choose another path",
                                    [label])
        for other_label, other in seen:
            if same_file(path, other):
                raise PathCollision(f"{label} {path} is also {other_label}{_also(path, other)}; "
                                    "choose another path", [label, other_label])
        seen.append((label, path))


def _also(path: "str | os.PathLike", other: "str | os.PathLike") -> str:
    return "" if os.path.abspath(path) == os.path.abspath(other) else f" ({other})"


def sidecars_of(checkpoint: "str | os.PathLike", sha256: str | None) -> list[Named]:
    """The sidecar files beside ``checkpoint`` named after its sha256 (``<sha256[:16]>.<name>.safetensors``)."""
    if not sha256:
        return []
    folder = folder_of(checkpoint)
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(f"{sha256[:16]}.") and n.endswith(".safetensors"))
    except OSError:
        return []
    return [("sidecar of the input checkpoint", folder / n) for n in names]

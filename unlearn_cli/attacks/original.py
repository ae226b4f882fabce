"""The original model of an unlearned checkpoint: what the attack's power is measured on.

A checkpoint's lineage records, for each removal, the sha256 of the
checkpoint it was made from (``parent_sha256``), never a path. The parent of
the *last* removal (the model the requested records were removed from) is
looked for among the ``.safetensors`` files in the checkpoint's own folder,
where ``unlearn forget`` writes its output beside its input: each candidate's
header is read and its bytes hashed (at most :data:`MAX_CANDIDATES` files of
at most :data:`MAX_CANDIDATE_BYTES` each, so a folder of large files costs
bounded time). Sidecars (``<sha256 prefix>.<name>.safetensors``) are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn_cli.errors import BadInput

#: Files hashed in the search: a model folder holds a handful; a data lake should pass --original.
MAX_CANDIDATES = 64
#: Larger files are not hashed (seconds each): pass --original for them.
MAX_CANDIDATE_BYTES = 2 << 30
_SIDECAR = re.compile(r"^[0-9a-f]{16}\.")


@dataclass
class Original:
    """The model the power is measured on: ``kind`` original (a file), self (the target) or none."""

    kind: str
    checkpoint: Any = None
    note: str = ""


def find_parent(folder: Path, parent_sha256: str, skip: Path) -> Path | None:
    """The file in ``folder`` whose sha256 is ``parent_sha256`` (see the module docstring)."""
    from unlearn_cli.models.checkpoint import read_header_meta

    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors" and not _SIDECAR.match(p.name))
    except OSError:
        return None
    for path in names[:MAX_CANDIDATES]:
        try:
            if path.resolve() == skip.resolve() or not path.is_file() or path.stat().st_size > MAX_CANDIDATE_BYTES:
                continue
            if read_header_meta(path)["sha256"] == parent_sha256:
                return path
        except (BadInput, OSError):
            continue
    return None


def resolve_original(checkpoint: Any, explicit: Path | None) -> Original:
    """``--original`` (loaded), the checkpoint itself when it removed nothing, its lineage parent, or none."""
    from unlearn_cli.models.checkpoint import load_checkpoint

    if explicit is not None:
        ckpt = load_checkpoint(explicit)
        if ckpt.sha256 == checkpoint.sha256:
            return Original("self", None, "--original is the attacked checkpoint itself")
        return Original("original", ckpt, f"--original {Path(explicit).name}")
    removals = checkpoint.removals
    if not removals:
        return Original("self", None, "no removal in the checkpoint's lineage: it is its own original")
    parent = removals[-1].get("parent_sha256")
    if not parent or checkpoint.path is None:
        return Original("none", None, "the lineage records no parent checkpoint; pass --original CKPT")
    found = find_parent(Path(checkpoint.path).parent, str(parent), Path(checkpoint.path))
    if found is None:
        return Original("none", None, f"the lineage parent (sha256 {str(parent)[:12]}) is not beside the "
                                      "checkpoint; pass --original CKPT to measure the attack's power on it")
    return Original("original", load_checkpoint(found), f"lineage parent {found.name}")

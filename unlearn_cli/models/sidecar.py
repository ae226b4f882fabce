"""Sidecar files: state a method needs beside a checkpoint (DESIGN.md "Checkpoint").

A sidecar is a safetensors file named after the checkpoint's sha256 prefix,
``<sha256[:16]>.<name>.safetensors``, in the checkpoint's folder. Its header
metadata carries a JSON ``key``; a sidecar whose key differs from the one asked
for is treated as absent (settings changed), never trusted; so is one that is not a
regular file (a FIFO or device never blocks the run). Written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.inputs import CHECKPOINT_LIMIT, check_regular

PREFIX_LEN = 16


def sidecar_path(checkpoint_path: Path, checkpoint_sha256: str, name: str) -> Path:
    return Path(checkpoint_path).parent / f"{checkpoint_sha256[:PREFIX_LEN]}.{name}.safetensors"


def _canonical(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def load_sidecar(path: Path, key: dict[str, Any], relax: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Tensors of a matching sidecar, or None if missing, unreadable or made with other settings.

    ``relax`` names key fields that may differ (a lineage child reusing its parent's factors).
    """
    from safetensors import safe_open

    try:
        # A FIFO or device in the cache's place must not block the run: it is not a sidecar.
        check_regular(path, "sidecar", CHECKPOINT_LIMIT)
    except BadInput:
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            stored = meta.get("key")
            if relax:
                try:
                    stored = _canonical({k: v for k, v in json.loads(stored).items() if k not in relax})
                except (TypeError, ValueError, AttributeError):
                    return None
            if stored != _canonical(key):
                return None
            return {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception:  # a corrupt cache is rebuilt, not fatal
        return None


def save_sidecar(path: Path, tensors: dict[str, Any], key: dict[str, Any], extra: dict[str, str] | None = None) -> str:
    from safetensors.torch import save

    from unlearn_cli.ops.atomic import write_bytes

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata={"key": _canonical(key), **(extra or {})})
    return write_bytes(path, data)

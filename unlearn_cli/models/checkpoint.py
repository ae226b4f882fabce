"""Checkpoints: safetensors files with the ``unlearn`` metadata of DESIGN.md.

Tensors are the model's state_dict (SISA: ``shard{i}.`` prefixes). The header's
``__metadata__["unlearn"]`` is one JSON object: ``format``, ``arch``,
``training``, ``dataset``, ``lineage`` (plus ``kind`` and method-specific
entries). Raw record IDs are never written here. Files are only ever read with
safetensors (no pickle), and written through ``ops.atomic``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn_cli.errors import BadInput

FORMAT = 1
META_KEY = "unlearn"


@dataclass
class Checkpoint:
    state: dict[str, Any]            # name -> torch.Tensor
    meta: dict[str, Any]
    path: Path | None = None
    sha256: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "plain")

    @property
    def arch(self) -> dict[str, Any]:
        return self.meta["arch"]

    @property
    def training(self) -> dict[str, Any]:
        return self.meta.get("training", {})

    @property
    def dataset(self) -> dict[str, Any]:
        return self.meta.get("dataset", {})

    @property
    def lineage(self) -> list[dict[str, Any]]:
        return self.meta.setdefault("lineage", [])

    @property
    def removals(self) -> list[dict[str, Any]]:
        """The lineage steps that removed records (``calibrate`` patches weights without a removal)."""
        return removal_steps(self.meta.get("lineage") or [])

    def manifest_path(self) -> Path | None:
        """The manifest recorded in the checkpoint, resolved against the checkpoint's folder."""
        rel = self.dataset.get("manifest")
        if rel is None or self.path is None:
            return None
        return (self.path.parent / rel).resolve()

    def build_model(self, device: str = "cpu"):
        """Rebuild the module and load the weights, in eval mode."""
        from unlearn_cli.models.registry import build

        model = build(self.arch)
        try:
            missing, unexpected = model.load_state_dict(self.state, strict=False)
        except RuntimeError as exc:
            raise BadInput(f"{self.path}: weights do not fit architecture '{self.arch['name']}' "
                           f"({load_error_detail(exc)})") from None
        if missing or unexpected:
            raise BadInput(
                f"{self.path}: weights do not fit architecture '{self.arch['name']}' "
                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
        return model.to(device).eval()


def load_error_detail(exc: RuntimeError) -> str:
    """The first specific line of torch's ``load_state_dict`` error (its first line is generic)."""
    return next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))


#: Lineage steps that change the weights without removing requested records.
NOT_REMOVALS = ("calibrate",)


def removal_steps(lineage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in lineage if isinstance(entry, dict) and entry.get("method") not in NOT_REMOVALS]


def _read_header(path: Path, data: bytes) -> dict[str, Any]:
    """Parse the safetensors header ourselves so a foreign/truncated file gets a clear message."""
    if len(data) < 8:
        raise BadInput(f"{path}: not a safetensors checkpoint (file is {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len <= 0 or header_len > len(data) - 8:
        raise BadInput(f"{path}: not a safetensors checkpoint or truncated (header length {header_len})")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{path}: not a safetensors checkpoint (header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadInput(f"{path}: not a safetensors checkpoint (header is not an object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
            list(info["shape"])
        except (KeyError, TypeError, ValueError, IndexError):
            raise BadInput(f"{path}: corrupt safetensors header entry '{name}'") from None
    if 8 + header_len + end > len(data):
        raise BadInput(
            f"{path}: checkpoint is truncated ({len(data)} bytes, header promises {8 + header_len + end})"
        )
    return header


def _read(path: Path) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """File bytes, safetensors header and the parsed ``unlearn`` metadata."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a checkpoint") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    header = _read_header(path, data)
    metadata = header.get("__metadata__") or {}
    if META_KEY not in metadata:
        raise BadInput(f"{path}: safetensors file without 'unlearn' metadata (not written by unlearn train)")
    try:
        meta = json.loads(metadata[META_KEY])
    except (json.JSONDecodeError, TypeError):
        raise BadInput(f"{path}: 'unlearn' metadata is not valid JSON") from None
    if not isinstance(meta, dict) or "arch" not in meta:
        raise BadInput(f"{path}: 'unlearn' metadata lacks the 'arch' entry")
    if not isinstance(meta.get("format", 0), int):
        raise BadInput(f"{path}: 'unlearn' metadata has a non-integer format {meta.get('format')!r}")
    if meta.get("format", 0) > FORMAT:
        raise BadInput(
            f"{path}: checkpoint format {meta.get('format')} is newer than this tool understands ({FORMAT})"
        )
    return data, header, meta


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a one-line BadInput."""
    from safetensors.torch import load as st_load

    path = Path(path)
    data, header, meta = _read(path)
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise BadInput(f"{path}: corrupt safetensors data ({str(exc).splitlines()[0]})") from None
    extra = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != META_KEY}
    return Checkpoint(state, meta, path, hashlib.sha256(data).hexdigest(), extra)


def checkpoint_bytes(state: dict[str, Any], meta: dict[str, Any]) -> bytes:
    from safetensors.torch import save as st_save

    meta = {"format": FORMAT, **meta}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    return st_save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})


def verify_file(path: Path) -> None:
    """Loads back and checks every weight is finite: guard before publishing."""
    import torch

    ckpt = load_checkpoint(path)
    for name, tensor in ckpt.state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadInput(f"refusing to write a checkpoint with non-finite weights (tensor '{name}')")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], meta: dict[str, Any]) -> str:
    """Atomically write a verified checkpoint; return its sha256."""
    from unlearn_cli.ops.atomic import write_bytes

    return write_bytes(path, checkpoint_bytes(state, meta), verify=verify_file)


BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def is_buffer_name(name: str) -> bool:
    """BatchNorm statistics live in the state dict but are not trainable parameters."""
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


def relative_manifest(manifest: Path, checkpoint: Path) -> str:
    """Manifest path as recorded in a checkpoint: relative to the checkpoint's folder."""
    return os.path.relpath(Path(manifest).resolve(), Path(checkpoint).resolve().parent)


def finite(x: float) -> float | None:
    """JSON has no NaN: reports carry null instead."""
    return float(x) if math.isfinite(x) else None


def read_header_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata, tensor shapes and parameter count from the header alone (no torch)."""
    path = Path(path)
    data, header, meta = _read(path)
    tensors = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    params = sum(
        math.prod(v["shape"]) for k, v in header.items()
        if k != "__metadata__" and str(v.get("dtype", "")).startswith(("F", "BF")) and not is_buffer_name(k)
    )
    return {"meta": meta, "tensors": tensors, "parameters": int(params), "sha256": hashlib.sha256(data).hexdigest()}


def param_count(state: dict[str, Any]) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    return int(sum(t.numel() for k, t in state.items() if t.is_floating_point() and not is_buffer_name(k)))

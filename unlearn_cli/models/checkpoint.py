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
from unlearn_cli.models.metadata import parse_meta
from unlearn_cli.ops.inputs import (CHECKPOINT_HEADER_LIMIT, CHECKPOINT_LIMIT, brief, human_size, open_input,
                                    read_input, read_prefix, resolve_input, show_path)

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
        return self.meta.get("training") or {}  # null: imported without a recipe (training/importing.py)

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
        return resolve_input(self.path.parent / rel, "recorded manifest")

    def build_model(self, device: str = "cpu"):
        """Rebuild the module and load the weights strictly (``fit_module``), in eval mode."""
        kwargs = self.arch.get("kwargs") or {}
        return fit_module(self.arch, self.state, show_path(self.path or "?"),
                          input_shape=kwargs.get("input_shape"), num_classes=kwargs.get("num_classes")
                          ).to(device).eval()


def fit_problem(expected: dict[str, Any], state: dict[str, Any], input_shape: list[int] | None,
                num_classes: int | None) -> str | None:
    """What keeps ``state`` from loading strictly into a module whose state_dict is ``expected``, or None.

    A mismatch in the first weight matrix's input width or the last one's output width is said in
    the data set's terms (features or channels against ``input_shape``, classes against ``num_classes``).
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        return (f"missing keys {[show_path(k) for k in missing[:4]]}, "
                f"unexpected keys {[show_path(k) for k in unexpected[:4]]}")
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if not wrong:
        return None
    key, want, got = wrong[0], list(expected[wrong[0]].shape), list(state[wrong[0]].shape)
    matrices = [k for k, t in expected.items() if t.dim() >= 2]
    if (input_shape and matrices and key == matrices[0] and len(want) == len(got) and want[0] == got[0]
            and want[2:] == got[2:]):
        unit = "features" if len(want) == 2 else "channels"
        shown = math.prod(input_shape) if len(want) == 2 else input_shape[0]
        return (f"the first layer '{show_path(key)}' takes {got[1]} input {unit}, the manifest's data has "
                f"{shown} (input_shape {list(input_shape)})")
    if num_classes is not None and matrices and key == matrices[-1] and len(want) == len(got) and want[1:] == got[1:]:
        return (f"the model outputs {got[0]} classes ('{show_path(key)}' is {got}), the manifest has "
                f"num_classes {num_classes}")
    return f"shape of '{show_path(key)}': {got} in the file, {want} in the architecture"


def fit_module(spec: dict[str, Any], state: dict[str, Any], where: str, *,
               input_shape: list[int] | None = None, num_classes: int | None = None):
    """The module of ``spec`` with ``state`` loaded strictly; every misfit a one-line BadInput.

    The module is first built on torch's meta device (no memory) and its
    shapes compared with the weights: an ``arch`` whose sizes do not match
    is refused before anything of its size is allocated.
    """
    import torch

    from unlearn_cli.models.registry import build

    prefix = f"{where}: weights do not fit architecture '{show_path(spec['name'])}'"
    try:
        with torch.device("meta"):
            probe = build(spec)
    except BadInput:
        raise
    except Exception:  # noqa: BLE001 - a builder that cannot build on meta is checked by load_state_dict
        probe = None
    if probe is not None:
        problem = fit_problem(probe.state_dict(), state, input_shape, num_classes)
        if problem:
            raise BadInput(f"{prefix} ({problem})")
    model = build(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BadInput(f"{prefix} ({load_error_detail(exc)})") from None
    return model


def load_error_detail(exc: RuntimeError) -> str:
    """The first specific line of torch's ``load_state_dict`` error (its first line is generic)."""
    return next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))


#: Lineage steps that change the weights without removing requested records.
NOT_REMOVALS = ("calibrate",)


def removal_steps(lineage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in lineage if isinstance(entry, dict) and entry.get("method") not in NOT_REMOVALS]


def _read_header(path: Path, head: bytes, size: int) -> dict[str, Any]:
    """Parse the safetensors header ourselves so a foreign/truncated file gets a clear message.

    ``head`` holds at least the first 8 + header-length bytes of a file of ``size`` bytes.
    """
    shown = show_path(path)
    if size < 8:
        raise BadInput(f"{shown}: not a safetensors checkpoint (file is {size} bytes)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len <= 0 or header_len > size - 8:
        raise BadInput(f"{shown}: not a safetensors checkpoint or truncated (header length {header_len})")
    if header_len > CHECKPOINT_HEADER_LIMIT:
        raise BadInput(f"{shown}: safetensors header is larger than {human_size(CHECKPOINT_HEADER_LIMIT)}")
    try:
        header = json.loads(head[8 : 8 + header_len])
    except RecursionError:
        raise BadInput(f"{shown}: not a safetensors checkpoint (header JSON nested too deeply)") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise BadInput(f"{shown}: not a safetensors checkpoint (header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadInput(f"{shown}: not a safetensors checkpoint (header is not an object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
            if not all(isinstance(d, int) and d >= 0 for d in info["shape"]):
                raise ValueError(name)
        except (KeyError, TypeError, ValueError, IndexError):
            raise BadInput(f"{shown}: corrupt safetensors header entry '{show_path(name)}'") from None
    if 8 + header_len + end > size:
        raise BadInput(f"{shown}: checkpoint is truncated ({size} bytes, header promises {8 + header_len + end})")
    return header


def _meta_of(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The validated ``unlearn`` metadata of a parsed header (``models.metadata``)."""
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise BadInput(f"{show_path(path)}: corrupt safetensors header ('__metadata__' is not an object)")
    if META_KEY not in metadata:
        raise BadInput(f"{show_path(path)}: safetensors file without 'unlearn' metadata "
                       "(not written by unlearn train)")
    return parse_meta(path, metadata[META_KEY], FORMAT)


def _read(path: Path) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """File bytes (a regular file, bounded), safetensors header and the validated ``unlearn`` metadata."""
    data = read_input(path, "checkpoint", CHECKPOINT_LIMIT)
    header = _read_header(path, data, len(data))
    return data, header, _meta_of(path, header)


def _check_finite(path: Path, state: dict[str, Any]) -> None:
    import torch

    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadInput(f"{show_path(path)}: weights hold NaN/inf: {show_path(name)}")


def load_checkpoint(path: str | os.PathLike, *, check_weights: bool = True) -> Checkpoint:
    """Read and validate a checkpoint; every problem is a one-line BadInput.

    ``check_weights=False`` skips the NaN/inf scan (``verify_file`` words its own refusal).
    """
    path = Path(path)
    data, header, meta = _read(path)
    from safetensors.torch import load as st_load  # torch only once the file is known to be sound

    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise BadInput(f"{show_path(path)}: corrupt safetensors data ({brief(exc)})") from None
    if check_weights:
        _check_finite(path, state)
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

    ckpt = load_checkpoint(path, check_weights=False)
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
    """Metadata, tensor shapes and parameter count from the header alone (no torch, weights not read)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open_input(path, "checkpoint", CHECKPOINT_LIMIT) as (handle, size):
        head = read_prefix(handle, 8, path, "checkpoint")
        if len(head) == 8:
            (header_len,) = struct.unpack("<Q", head)
            if 0 < header_len <= min(size - 8, CHECKPOINT_HEADER_LIMIT):
                head += read_prefix(handle, header_len, path, "checkpoint")
        header = _read_header(path, head, size)
        meta = _meta_of(path, header)
        digest.update(head)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    tensors = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    params = sum(
        math.prod(v["shape"]) for k, v in header.items()
        if k != "__metadata__" and str(v.get("dtype", "")).startswith(("F", "BF")) and not is_buffer_name(k)
    )
    return {"meta": meta, "tensors": tensors, "parameters": int(params), "sha256": digest.hexdigest()}


def param_count(state: dict[str, Any]) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    return int(sum(t.numel() for k, t in state.items() if t.is_floating_point() and not is_buffer_name(k)))

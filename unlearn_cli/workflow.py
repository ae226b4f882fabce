"""Glue shared by the commands: datasets for checkpoints, tensors, evaluation,
fitting a new checkpoint. Commands call these; they hold no math themselves.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .data.manifest import Dataset, load_manifest
from .errors import BadInput
from .metrics import predict_logits, summarize
from .models.checkpoint import Checkpoint, load_checkpoint, relative_manifest
from .models.registry import make_spec
from .training import Recipe, init_model, train_model


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dataset_for(ckpt: Checkpoint, data: Path | None) -> Dataset:
    """The checkpoint's data set (``--data`` or the recorded manifest), checked against its digest."""
    manifest = Path(data) if data is not None else ckpt.manifest_path()
    if manifest is None:
        raise BadInput(f"{ckpt.path}: no manifest recorded in the checkpoint; pass --data MANIFEST")
    if data is None and not manifest.exists():
        raise BadInput(f"{ckpt.path}: recorded manifest {manifest} does not exist; pass --data MANIFEST")
    dataset = load_manifest(manifest)
    recorded = ckpt.dataset.get("train_ids_digest")
    if recorded and recorded != dataset.train_id_digest():
        raise BadInput(
            f"{manifest}: its train split does not match the one {ckpt.path.name} was trained on "
            f"(train-ID digest {dataset.train_id_digest()[:12]} != recorded {recorded[:12]})"
        )
    return dataset


def open_checkpoint(path: Path, data: Path | None = None) -> tuple[Checkpoint, Dataset]:
    ckpt = load_checkpoint(path)
    return ckpt, dataset_for(ckpt, data)


def tensors(dataset: Dataset, rows: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Feature and label tensors for the given row indices."""
    x = torch.from_numpy(np.ascontiguousarray(dataset.x[rows])).to(device)
    y = torch.from_numpy(np.ascontiguousarray(dataset.y[rows])).to(device)
    return x, y


def evaluate_rows(model: Any, dataset: Dataset, rows: np.ndarray, device: torch.device | str = "cpu") -> dict[str, Any]:
    x, y = tensors(dataset, rows, device)
    return summarize(predict_logits(model, x), y.cpu())


def evaluate_splits(model: Any, dataset: Dataset, splits: dict[str, np.ndarray], device="cpu") -> dict[str, Any]:
    return {name: evaluate_rows(model, dataset, rows, device) for name, rows in splits.items()}


def param_count(state: dict[str, torch.Tensor]) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    from .models.checkpoint import is_buffer_name

    return int(sum(t.numel() for k, t in state.items() if t.is_floating_point() and not is_buffer_name(k)))


def arch_spec_for(dataset: Dataset, arch: str, hidden: list[int] | None, activation: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if arch == "mlp":
        kwargs["hidden"] = list(hidden) if hidden is not None else [64, 32]
        kwargs["activation"] = activation or "relu"
    elif hidden is not None or activation is not None:
        option = "--hidden" if hidden is not None else "--activation"
        raise BadInput(f"{option} applies to --arch mlp only, not '{arch}'")
    if arch in ("cnn", "densenet") and len(dataset.input_shape) != 3:
        raise BadInput(
            f"--arch {arch} needs image data with input_shape [channels, height, width]; "
            f"{dataset.manifest_path.name} has input shape {list(dataset.input_shape)}"
        )
    return make_spec(arch, dataset.input_shape, dataset.num_classes, **kwargs)


def dataset_meta(dataset: Dataset, checkpoint_path: Path) -> dict[str, Any]:
    return {
        "manifest": relative_manifest(dataset.manifest_path, checkpoint_path),
        "name": dataset.name,
        "data_sha256": dataset.data_sha256,
        "train_ids_digest": dataset.train_id_digest(),
        "n_train": int(dataset.train.sum()),
    }


def fit(
    dataset: Dataset,
    rows: np.ndarray,
    arch_spec: dict[str, Any],
    recipe: Recipe,
    *,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    on_step: Callable | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """Initialise from the recipe's seed and train on ``rows`` with the one training loop."""
    model = init_model(arch_spec, recipe.seed).to(device)
    x, y = tensors(dataset, rows, device)
    result = train_model(model, x, y, recipe, device=device, progress=progress, on_step=on_step)
    if result.losses and not all(math.isfinite(v) for v in result.losses):
        raise BadInput("training diverged (non-finite loss); lower --lr")
    return model, result.losses


def base_meta(arch_spec: dict[str, Any], recipe: Recipe, dataset: Dataset, out: Path) -> dict[str, Any]:
    return {
        "kind": "plain",
        "arch": arch_spec,
        "training": recipe.to_dict(),
        "dataset": dataset_meta(dataset, out),
        "lineage": [],
        "created": {"time": utc_now(), "tool_version": __version__},
    }


def load_predictor(ckpt: Checkpoint, device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable x -> logits for any checkpoint kind.

    Plain checkpoints give the module itself (in eval mode). Checkpoints of
    other kinds (SISA ensembles) return their aggregate: every command that
    predicts (evaluate, attack, debug-labels) goes through here.
    """
    if ckpt.kind == "plain":
        return ckpt.build_model(device)
    from .models.ensemble import load_ensemble  # SISA: aggregated constituents

    return load_ensemble(ckpt, device)

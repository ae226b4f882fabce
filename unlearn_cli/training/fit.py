"""A model from a data set: one seeded initialisation, the one training loop, and the
base metadata of a new checkpoint (``training/train.py`` makes whole checkpoints)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from unlearn_cli.ops.progress import Progress
from unlearn_cli import __version__
from unlearn_cli.data.dataset import Dataset
from unlearn_cli.data.tensors import tensors
from unlearn_cli.errors import BadInput
from unlearn_cli.models.datasets import dataset_meta
from unlearn_cli.ops.clock import utc_now
from unlearn_cli.training.loop import Recipe, init_model, train_model


def fit(
    dataset: Dataset,
    rows: np.ndarray,
    arch_spec: dict[str, Any],
    recipe: Recipe,
    *,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
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

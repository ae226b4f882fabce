"""Rows of a data set as torch tensors."""

from __future__ import annotations

import numpy as np
import torch

from unlearn_cli.data.dataset import Dataset


def tensors(dataset: Dataset, rows: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Feature and label tensors for the given row indices."""
    x = torch.from_numpy(np.ascontiguousarray(dataset.x[rows])).to(device)
    y = torch.from_numpy(np.ascontiguousarray(dataset.y[rows])).to(device)
    return x, y

"""Predictions and the standard metrics: accuracy, loss, calibration error.

ECE uses 15 equal-width confidence bins (Guo et al. 2017), the usual default.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from unlearn_cli.data.dataset import Dataset
from unlearn_cli.data.tensors import tensors
from unlearn_cli.models.checkpoint import Checkpoint
from unlearn_cli.ops import dist

ECE_BINS = 15


@torch.no_grad()
def predict_logits(model: nn.Module | Callable, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits for every row, in eval mode, in batches to bound memory.

    Under torchrun each rank predicts its contiguous block of rows (``dist.shard``) and one
    all-reduce of the zero-padded (rows, classes) matrix gives every rank all the logits: each entry
    is one rank's value plus zeros, so the sum is exact and every metric is computed as in one process.
    """
    if isinstance(model, nn.Module):
        model.eval()
    if dist.active() and len(x) >= dist.world():
        return _predict_split(model, x, batch_size)
    outs = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    if not outs:
        return torch.empty(0)
    return torch.cat(outs).float().cpu()


def _predict_split(model: nn.Module | Callable, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    bounds = dist.shard_bounds(len(x))
    lo, hi = bounds[dist.rank()], bounds[dist.rank() + 1]
    dist.count("predict_records", hi - lo)
    local = torch.cat([model(x[i : min(i + batch_size, hi)]) for i in range(lo, hi, batch_size)]).float().cpu()
    width = dist.all_reduce_sum(torch.tensor([local.shape[1] if local.dim() == 2 else -1]))
    if local.dim() != 2 or int(width[0]) != local.shape[1] * dist.world():
        raise ValueError("ranks disagree on the shape of the model's output")
    return dist.gather_rows(local, len(x))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error with equal-width bins on max-probability."""
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins, so confidence 1.0 lands in the top bin and 0 in none but the first.
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def summarize(logits: torch.Tensor, labels: torch.Tensor | np.ndarray) -> dict[str, float]:
    """accuracy, mean cross-entropy loss, ECE and count for one split."""
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    n = int(len(labels_t))
    if n == 0:
        return {"n": 0, "accuracy": None, "loss": None, "ece": None}
    loss = float(nn.functional.cross_entropy(logits, labels_t))
    probs = torch.softmax(logits, 1).numpy()
    acc = float((probs.argmax(1) == labels_t.numpy()).mean())
    return {"n": n, "accuracy": acc, "loss": loss, "ece": ece(probs, labels_t.numpy())}


def evaluate_rows(model: Any, dataset: Dataset, rows: np.ndarray, device: torch.device | str = "cpu") -> dict[str, Any]:
    x, y = tensors(dataset, rows, device)
    return summarize(predict_logits(model, x), y.cpu())


def evaluate_splits(model: Any, dataset: Dataset, splits: dict[str, np.ndarray], device="cpu") -> dict[str, Any]:
    return {name: evaluate_rows(model, dataset, rows, device) for name, rows in splits.items()}


def load_predictor(ckpt: Checkpoint, device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable x -> logits for any checkpoint kind.

    Plain checkpoints give the module itself (in eval mode). Checkpoints of
    other kinds (SISA ensembles) return their aggregate: every command that
    predicts (evaluate, attack, debug-labels) goes through here.
    """
    if ckpt.kind == "plain":
        return ckpt.build_model(device)
    from unlearn_cli.models.ensemble import load_ensemble  # SISA: aggregated constituents

    return load_ensemble(ckpt, device)

"""Amnesiac update logs (Graves, Nagisetty, Ganesh, "Amnesiac Machine Learning", AAAI 2021).

``unlearn train --track-updates`` records, for every optimizer step, the
parameter update that step made (``theta_after - theta_before``) and which
train records were in its batch. Forgetting a record subtracts the updates of
every batch that held it (Amnesiac ML cannot remove a single record's share of
a batch update, so whole batches go: the PUMA paper's appendix on Amnesiac).

Sidecar ``update-log`` (safetensors, named after the checkpoint's sha256):

* ``delta.<name>``: (steps, *shape) float32, the update of state entry
  ``<name>`` at each step (floating-point entries only: weights, biases and
  BatchNorm running statistics);
* ``positions``: (steps, batch_size) int64, the batch's records as positions
  into ``dataset.train_indices()`` (never raw IDs), padded with -1. They equal
  ``training.loop.batch_schedule(n_train, batch_size, epochs, seed)``, so the log
  can be checked against the recorded recipe;
* ``removed``: (steps,) bool, batches already subtracted by an earlier forget
  (their deltas are zeroed in the new log: the removed records' updates are
  not kept beside the model).

The checkpoint's metadata marks such checkpoints with ``update_log: {...}``.
Summing every delta gives ``theta_final - theta_init`` up to float32 rounding
of each delta, so subtracting every batch returns the initial weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.ops.progress import Progress
from unlearn_cli.errors import BadInput

SIDECAR = "update-log"
#: Refuse logs larger than this: it is held in memory while training.
MAX_BYTES = 4 << 30


def tracked_names(state: dict[str, Any]) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point()]


def log_bytes(state: dict[str, Any], steps: int, batch_size: int) -> int:
    per_step = sum(state[k].numel() * state[k].element_size() for k in tracked_names(state))
    return steps * (per_step + 8 * batch_size + 1)


def train_tracked(dataset, rows: np.ndarray, arch: dict[str, Any], recipe, *, device="cpu",
                  progress: Progress | None = None):
    """Train like ``training.fit.fit`` while logging every step's update.

    Returns (model, losses, log tensors, metadata entry).
    """
    import torch

    from unlearn_cli.training.loop import init_model, steps_per_epoch
    from unlearn_cli.training.fit import fit

    init = init_model(arch, recipe.seed).state_dict()
    names = tracked_names(init)
    steps = recipe.epochs * steps_per_epoch(len(rows), recipe.batch_size)
    size = log_bytes(init, steps, recipe.batch_size)
    if size > MAX_BYTES:
        raise BadInput(f"--track-updates would need {size / 2**30:.1f} GiB for {steps} steps of this model; "
                       "use fewer epochs, a larger batch size or a smaller architecture")
    deltas = {k: torch.empty((steps, *init[k].shape), dtype=init[k].dtype) for k in names}
    positions = torch.full((steps, recipe.batch_size), -1, dtype=torch.int64)
    prev = {k: init[k].detach().clone().to(device) for k in names}

    def on_step(info) -> None:
        current = info.model.state_dict()
        for k in names:
            now = current[k].detach()
            deltas[k][info.step] = (now - prev[k]).cpu()
            prev[k].copy_(now)
        positions[info.step, : len(info.positions)] = torch.from_numpy(np.asarray(info.positions, dtype=np.int64))

    model, losses = fit(dataset, rows, arch, recipe, device=device, progress=progress, on_step=on_step)
    tensors = {f"delta.{k}": v for k, v in deltas.items()}
    tensors["positions"] = positions
    tensors["removed"] = torch.zeros(steps, dtype=torch.bool)
    meta = {
        "sidecar": SIDECAR,
        "steps": int(steps),
        "batch_size": int(recipe.batch_size),
        "epochs": int(recipe.epochs),
        "dtype": "float32",
        "bytes": int(size),
        "removed_batches": 0,
        "positions": "into dataset.train_indices(); replayable with training.batch_schedule",
    }
    return model, losses, tensors, meta


def check_log(log: dict[str, Any], state: dict[str, Any]) -> int:
    """Validate a loaded log against the checkpoint's state; returns its step count."""
    if "positions" not in log or "removed" not in log:
        raise BadInput("update log sidecar lacks 'positions' / 'removed'")
    steps = int(log["positions"].shape[0])
    for k in tracked_names(state):
        d = log.get(f"delta.{k}")
        if d is None or tuple(d.shape) != (steps, *state[k].shape):
            raise BadInput(f"update log sidecar does not match the checkpoint (tensor '{k}')")
    return steps


def batches_holding(log: dict[str, Any], positions: np.ndarray) -> np.ndarray:
    """Bool per step: did that batch hold any of ``positions``?"""
    pos = log["positions"].numpy()
    return np.isin(pos, positions).any(axis=1)


def subtract(state: dict[str, Any], log: dict[str, Any], steps: np.ndarray) -> dict[str, Any]:
    """theta - sum of the updates of ``steps`` (accumulated in float64)."""
    import torch

    idx = torch.from_numpy(np.flatnonzero(steps))
    out = {}
    for k, v in state.items():
        d = log.get(f"delta.{k}")
        if d is None or not v.is_floating_point() or len(idx) == 0:
            out[k] = v.clone()
            continue
        total = d.index_select(0, idx).double().sum(0)
        out[k] = (v.double() - total.to(v.device)).to(v.dtype)
    return out


def pruned_log(log: dict[str, Any], steps: np.ndarray) -> dict[str, Any]:
    """The log after removing ``steps``: their deltas zeroed and marked removed."""
    import torch

    mask = torch.from_numpy(steps)
    out = {}
    for k, v in log.items():
        if k.startswith("delta."):
            v = v.clone()
            v[mask] = 0
        elif k == "removed":
            v = v | mask
        out[k] = v
    return out

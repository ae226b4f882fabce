"""Feature scaling named by a manifest's ``normalize`` key.

``none`` | ``standard`` (zero mean, unit variance) | ``minmax`` (to [0, 1]) |
``scale255`` (divide by 255, for 8-bit images). Statistics come from the train
rows only, so the test split never leaks into the inputs a model is trained on.
"""

from __future__ import annotations

import numpy as np


def normalize(x: np.ndarray, train: np.ndarray, mode: str) -> np.ndarray:
    """Scale (N, D) float32 features; statistics come from train rows only."""
    if mode == "none":
        return x
    if mode == "scale255":
        return x / np.float32(255.0)
    # float64 statistics: float32 sums over many rows lose precision.
    tx = x[train].astype(np.float64)
    if mode == "standard":
        centre, spread = tx.mean(axis=0), tx.std(axis=0)
    else:  # minmax
        centre, spread = tx.min(axis=0), tx.max(axis=0) - tx.min(axis=0)
    # Constant features would divide by zero; leave them shifted but unscaled.
    spread = np.where(spread > 0, spread, 1.0)
    return ((x - centre.astype(np.float32)) / spread.astype(np.float32)).astype(np.float32)

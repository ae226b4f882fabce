"""Per-record signals an attacker reads off a model's logits.

All of them are computed in float64 from logits, never from rounded
probabilities, so a confident model's members (p_y = 1 - 1e-9) and
non-members (p_y = 1 - 1e-6) stay apart.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: Clip for log-probabilities and logit-scaled confidences fed to the Shokri
#: attack MLP: beyond e^-30 the differences are float32 rounding, not signal.
FEATURE_CLIP = 30.0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def per_record_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each record."""
    logp = log_softmax(logits)
    return -logp[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j (Carlini et al. 2022).

    The right-hand form is exact and never divides by a rounded 1 - p_y.
    """
    z = np.asarray(logits, dtype=np.float64)
    idx = np.arange(len(labels))
    y = np.asarray(labels, dtype=np.int64)
    z_y = z[idx, y]
    others = z.copy()
    others[idx, y] = -np.inf
    m = others.max(axis=1)
    if z.shape[1] == 1:  # a one-class model: p_y is 1 whatever the input
        return np.full(len(y), np.inf)
    lse = m + np.log(np.exp(others - m[:, None]).sum(axis=1))
    return z_y - lse


def shokri_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sorted log-softmax vector (descending) plus the true label's phi.

    Sorting makes one attack model serve every class (five shadows on < 10%
    of a small train split leave too few records per class for Shokri's
    per-class models); the true-label phi lets it tell a confident wrong
    prediction (non-member-like) from a confident right one.
    """
    logp = np.clip(-np.sort(-log_softmax(logits), axis=1), -FEATURE_CLIP, 0.0)
    phi = np.clip(logit_confidence(logits, labels), -FEATURE_CLIP, FEATURE_CLIP)
    return np.concatenate([logp, phi[:, None]], axis=1)


def model_logits(predictor: Callable[[Any], Any], dataset: Any, rows: np.ndarray,
                 device: Any = "cpu") -> np.ndarray:
    """Logits of ``predictor`` on the given data set rows, as a float64 array."""
    from unlearn_cli.models.predict import predict_logits
    from unlearn_cli.data.tensors import tensors

    if len(rows) == 0:
        return np.zeros((0, dataset.num_classes))
    x, _ = tensors(dataset, np.asarray(rows, dtype=np.int64), device)
    return predict_logits(predictor, x).double().numpy()

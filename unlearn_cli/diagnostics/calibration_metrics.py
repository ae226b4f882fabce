"""Calibration metrics and temperature scaling, on max-probability confidence.

* ECE: 15 equal-width bins (Guo et al. 2017; ``models.predict.ece``), MCE: the
  largest bin gap, adaptive ECE: 15 equal-mass bins (Nguyen & O'Connor 2015),
  class-wise ECE: the mean over classes of the 15-bin ECE of p(c|x) against
  1[y = c] (Kull et al. 2019), NLL, Brier score (sum over classes of
  (p_c - 1[y = c])^2, averaged over records), accuracy, and the reliability
  table (lower, upper, confidence, accuracy, count per bin): ``calibration_metrics``.
* Temperature scaling (Guo et al. 2017), the baseline ``calibrate`` reports
  beside PUMA: ``fit_temperature``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.errors import BadInput
from unlearn_cli.models.predict import ECE_BINS, ece

PROB_FLOOR = 1e-12  # keeps log p finite in the NLL of a confidently wrong prediction


def _bin_index(conf: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width, right-closed bins on [0, 1], the convention of ``models.predict.ece``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin: lower, upper, mean confidence, accuracy, count (empty bins: null means)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    which = _bin_index(conf, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    for b in range(bins):
        sel = which == b
        count = int(sel.sum())
        table.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "confidence": float(conf[sel].mean()) if count else None,
            "accuracy": float(correct[sel].mean()) if count else None,
            "count": count,
        })
    return table


def max_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    gaps = [abs(row["accuracy"] - row["confidence"]) for row in reliability_table(probs, labels, bins) if row["count"]]
    return float(max(gaps)) if gaps else float("nan")


def adaptive_ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over bins holding (nearly) equal numbers of records, sorted by confidence."""
    n = len(labels)
    if n == 0:
        return float("nan")
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, n)):
        total += len(part) / n * abs(correct[part].mean() - conf[part].mean())
    return float(total)


def classwise_ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    n, classes = probs.shape
    if n == 0:
        return float("nan")
    per_class = []
    for c in range(classes):
        p = probs[:, c]
        hit = (labels == c).astype(np.float64)
        which = _bin_index(p, bins)
        total = 0.0
        for b in range(bins):
            sel = which == b
            if sel.any():
                total += sel.mean() * abs(hit[sel].mean() - p[sel].mean())
        per_class.append(total)
    return float(np.mean(per_class))


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        raise BadInput("no records to measure calibration on")
    onehot = np.eye(probs.shape[1])[labels]
    return {
        "n": int(n),
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "ece": ece(probs, labels, bins),
        "mce": max_calibration_error(probs, labels, bins),
        "adaptive_ece": adaptive_ece(probs, labels, bins),
        "classwise_ece": classwise_ece(probs, labels, bins),
        "nll": float(-np.log(np.maximum(probs[np.arange(n), labels], PROB_FLOOR)).mean()),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
        "reliability": reliability_table(probs, labels, bins),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising the NLL of softmax(logits / T) (Guo et al. 2017): a 1-D convex problem in 1/T."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise BadInput("no held-out records to fit the temperature on")

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        scaled = scaled - scaled.max(1, keepdims=True)
        return float((np.log(np.exp(scaled).sum(1)) - scaled[np.arange(len(labels)), labels]).mean())

    result = minimize_scalar(nll, bounds=(np.log(1e-2), np.log(1e2)), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def temperature_or_none(logits: np.ndarray, labels: np.ndarray) -> tuple[float | None, str]:
    """``fit_temperature`` when its minimum exists, else (None, why).

    When every fitting record is classified correctly the NLL keeps falling as
    T -> 0 (sharpening never costs a correct record), so the "fitted" T is
    the search bound, not an estimate (measured: T = 0.016 on 60 spiral
    records, which doubled the NLL of the records reported on). The same
    holds for a T at either end of the search range.
    """
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if not np.any(z.argmax(1) != labels):
        return None, "every fitting record is classified correctly: the NLL has no minimum (T -> 0)"
    temperature = fit_temperature(z, labels)
    if not 1.5e-2 < temperature < 0.67e2:
        return None, f"the fitted T {temperature:.3g} is at the end of the search range (1e-2, 1e2): no minimum"
    return temperature, "fitted"

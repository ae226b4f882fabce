"""The paper's Algorithms 2 and 3: which low-influence records are suspects, by prediction confidence.

Both start from L_if, the k records of lowest influence psi on C, and the k
least (L_cf) and k most (H_cf) confident predictions. Algorithm 2 (label
debugging) keeps L_if minus both confidence sets; Algorithm 3 (calibration,
appendix E) sorts L_if into over-confident, over-uncertain and other noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _low_influence(influence, confidence, k: int):
    """(influence, k, L_if positions, L_cf mask, H_cf mask) with k clipped to the number of records."""
    influence = np.asarray(influence, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    n = len(influence)
    k = max(0, min(int(k), n))
    lif = np.argsort(influence, kind="stable")[:k]
    low = np.zeros(n, dtype=bool)
    low[np.argsort(confidence, kind="stable")[:k]] = True
    high = np.zeros(n, dtype=bool)
    high[np.argsort(-confidence, kind="stable")[:k]] = True
    return influence, k, lif, low, high


def algorithm2(influence: np.ndarray, confidence: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The candidate set S of Algorithm 2 (positions, lowest influence first) and what led to it.

    L_if = the k lowest influences, L_cf / H_cf = the k lowest / highest
    confidences; S = L_if minus (L_cf u H_cf); S is emptied when its mean
    influence exceeds that of L_if n L_cf (the listing's final check).
    """
    influence, k, lif, low, high = _low_influence(influence, confidence, k)
    candidates = lif[~(low | high)[lif]]
    low_low = lif[low[lif]]
    mean_s = float(influence[candidates].mean()) if len(candidates) else None
    mean_ll = float(influence[low_low].mean()) if len(low_low) else None
    passed = None if mean_s is None or mean_ll is None else mean_s <= mean_ll
    chosen = candidates if passed is not False else candidates[:0]
    return chosen, {
        "k": k,
        "low_influence": int(len(lif)),
        "candidates": int(len(candidates)),
        "low_influence_low_confidence": int(len(low_low)),
        "mean_influence_candidates": mean_s,
        "mean_influence_low_confidence": mean_ll,
        "check_passed": passed,
        "selected": int(len(chosen)),
    }


def algorithm2_order(influence: np.ndarray, confidence: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A full ordering from Algorithm 2: S first (by influence), then every other record by influence."""
    chosen, info = algorithm2(influence, confidence, k)
    by_influence = np.argsort(np.asarray(influence, dtype=np.float64), kind="stable")
    rest = by_influence[~np.isin(by_influence, chosen)]
    return np.concatenate([chosen, rest]).astype(np.int64), info


def algorithm3(influence: np.ndarray, confidence: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Positions of the over-confident (S1), over-uncertain (S2) and other-noise (S3) records.

    Confidence is the prediction's max probability, the quantity ECE bins: a
    confidently wrong prediction is over-confident, not over-uncertain.
    """
    _, _, lif, low, high = _low_influence(influence, confidence, k)
    return {
        "low_influence": lif,
        "over_confident": lif[high[lif]],
        "over_uncertain": lif[low[lif] & ~high[lif]],
        "other_noise": lif[~low[lif] & ~high[lif]],
    }

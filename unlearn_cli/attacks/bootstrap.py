"""Bootstrap confidence intervals on an attack's numbers (numpy only).

Choice, and why:

* **Stratified percentile bootstrap, 1000 resamples, 95%.** Members (the
  forget or retain rows) and non-members (the test rows) are resampled with
  replacement separately, each keeping its size, because the two groups are
  sampled separately in an audit; the interval is the 2.5th and 97.5th
  percentiles of the 1000 resampled values (Efron's percentile interval:
  no normality assumed, right for the bounded, skewed AUC and TPR near 0 or 1).
  1000 resamples put the percentile endpoints within about +-0.005 of their
  limit for AUC; more buys nothing an operator can see.
* **Seeded.** The resample plan is drawn from ``derive_seed(seed, "bootstrap")``
  so a report is reproducible and every model attacked in one run is
  resampled with the *same* record indices: the resampled numbers of the
  unlearned model, the original and the reference are paired, and the
  interval of a gap between two models (``attacks.verdict``) is read off the
  same resamples.
* **What it covers**: the sampling of records (which forget and test records
  the audit happened to have), not the randomness of training the attacked
  model or the attack's shadow/reference models.

Resampled AUC and TPR-at-FPR are computed for all resamples at once from
multiplicity (count) matrices: the AUC as a weighted Mann-Whitney U (ties
count one half) and the TPR at FPR f as the share of members strictly above
the (floor(f * N) + 1)-th highest non-member score, which is what
``metrics.roc_auc`` and ``metrics.tpr_at_fpr`` give on an unweighted sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unlearn_cli.ops.digests import derive_seed

#: Resamples: percentile endpoints to about +-0.005 in AUC (see the module docstring).
RESAMPLES = 1000
#: Two-sided coverage of every interval in the report.
LEVEL = 0.95
#: The TPR-at-FPR points of the report (Carlini et al. 2022).
FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
#: The rows compared against the test rows (the non-members).
MEMBER_SPLITS = ("forget", "retain")


def counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) multiplicities of a with-replacement resample of n records."""
    if n == 0:
        return np.zeros((resamples, 0), dtype=np.int64)
    picks = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(picks.ravel(), minlength=resamples * n).reshape(resamples, n)


def weighted_auc(pos: np.ndarray, neg: np.ndarray, wp: np.ndarray, wn: np.ndarray) -> np.ndarray:
    """AUC of each resample: (resamples,) from scores and (resamples, n) multiplicities."""
    order = np.argsort(neg, kind="stable")
    neg_sorted = neg[order]
    cum = np.concatenate([np.zeros((len(wn), 1)), np.cumsum(wn[:, order], axis=1)], axis=1)
    below = np.searchsorted(neg_sorted, pos, side="left")
    upto = np.searchsorted(neg_sorted, pos, side="right")
    wins = cum[:, below] + 0.5 * (cum[:, upto] - cum[:, below])   # (resamples, members)
    return (wp * wins).sum(axis=1) / (len(pos) * len(neg))


def weighted_tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, wp: np.ndarray, wn: np.ndarray,
                        fpr: float) -> np.ndarray:
    """TPR at FPR <= ``fpr`` of each resample (the best threshold "member if score >= t")."""
    allowed = int(np.floor(fpr * len(neg) + 1e-9))   # non-members that may sit at or above t
    if allowed >= len(neg):
        return np.ones(len(wp))
    order = np.argsort(-neg, kind="stable")
    from_top = np.cumsum(wn[:, order], axis=1)
    cut = neg[order][np.argmax(from_top >= allowed + 1, axis=1)]   # the (allowed+1)-th highest
    pos_order = np.argsort(pos, kind="stable")
    pos_sorted = pos[pos_order]
    cum = np.concatenate([np.zeros((len(wp), 1)), np.cumsum(wp[:, pos_order], axis=1)], axis=1)
    at_or_below = cum[np.arange(len(wp)), np.searchsorted(pos_sorted, cut, side="right")]
    return (len(pos) - at_or_below) / len(pos)


def interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval [lo, hi] of bootstrap values (None when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


@dataclass
class Plan:
    """One resample plan (multiplicities per split) shared by every model attacked in a run."""

    weights: dict[str, np.ndarray]
    resamples: int
    level: float
    seed: int

    @classmethod
    def make(cls, sizes: dict[str, int], seed: int, resamples: int = RESAMPLES, level: float = LEVEL) -> "Plan":
        rng = np.random.default_rng(derive_seed(seed, "bootstrap", 0))
        return cls({split: counts(n, resamples, rng) for split, n in sizes.items()}, resamples, level, seed)

    def describe(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "level": self.level, "method": "stratified percentile",
                "seed": self.seed}


def _as_array(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64).ravel()


def distributions(scores: dict[str, Any], decisions: dict[str, Any], plan: Plan) -> dict[str, np.ndarray]:
    """Bootstrap values by report key: ``<split>.member_rate`` and ``<split>.<auc|tpr...>`` (vs test)."""
    out: dict[str, np.ndarray] = {}
    for split, w in plan.weights.items():
        d = decisions.get(split)
        if d is not None and len(d) == w.shape[1] and len(d):
            out[f"{split}.member_rate"] = w @ np.asarray(d, dtype=np.float64) / len(d)
    neg, wn = _as_array(scores.get("test")), plan.weights.get("test")
    if neg is None or wn is None or len(neg) == 0:
        return out
    for split in MEMBER_SPLITS:
        pos, wp = _as_array(scores.get(split)), plan.weights.get(split)
        if pos is None or wp is None or len(pos) == 0 or len(pos) != wp.shape[1]:
            continue
        out[f"{split}.auc"] = weighted_auc(pos, neg, wp, wn)
        for key, fpr in FPRS.items():
            out[f"{split}.{key}"] = weighted_tpr_at_fpr(pos, neg, wp, wn, fpr)
    return out


def attach_intervals(entry: dict[str, Any], dists: dict[str, np.ndarray], level: float = LEVEL) -> None:
    """Add ``<key>_ci`` beside each number of a report entry (forget's also at the top, like its points)."""
    for name, values in dists.items():
        split, key = name.split(".", 1)
        ci = interval(values, level)
        if isinstance(entry.get(split), dict):
            entry[split][f"{key}_ci"] = ci
        if split == "forget" and key != "member_rate":
            entry[f"{key}_ci"] = ci

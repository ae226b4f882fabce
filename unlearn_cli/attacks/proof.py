"""From an attack's per-record scores to what the report can claim: intervals, power, verdict, ROC data.

:func:`add_evidence` runs after :func:`~unlearn_cli.attacks.registry.run_attack`:
one bootstrap resample plan (``attacks.bootstrap``) is shared by every model
attacked (target, original, reference), so their resampled numbers are
paired; it adds ``<key>_ci`` beside every number, ``power`` (``attacks.verdict``)
and, with a reference, ``verdict``. :func:`roc_curves` gives each model's
forget-vs-test ROC curve, thinned to at most :data:`MAX_CURVE_POINTS` points
(denser at low FPR, where the log-log plot looks) for the report and plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.attacks.base import SPLITS
from unlearn_cli.attacks.bootstrap import RESAMPLES, Plan, attach_intervals, distributions
from unlearn_cli.attacks.verdict import power, verdict

#: Points kept per ROC curve in the report: enough for a smooth log-log plot, small in JSON.
MAX_CURVE_POINTS = 200
ROLES = ("target", "original", "reference")


def add_evidence(result: Any, original_kind: str | None, seed: int,
                 resamples: int = RESAMPLES) -> dict[str, dict[str, np.ndarray]]:
    """Intervals on every entry of ``result``, ``power`` and ``verdict`` on the target's; returns the
    bootstrap values by role.

    ``original_kind`` (``attacks.original``): ``original`` (``result.original`` is it), ``self`` (the
    target is its own original), ``none`` (read the power off the target's retain rows) or None (the
    attack measures no power).
    """
    plan = Plan.make({split: len(result.splits.rows(split)) for split in SPLITS}, seed, resamples)
    dists = {role: distributions(s.scores, s.decisions, plan) for role, s in result.scored.items()}
    entries = {"target": result.target, "original": result.original, "reference": result.reference}
    for role, entry in entries.items():
        if entry is not None and role in dists:
            attach_intervals(entry, dists[role], plan.level)
            entry["bootstrap"] = plan.describe()
    if original_kind == "original" and result.original is not None:
        result.target["power"] = power(result.original, dists["original"], "original", plan.level)
    elif original_kind in ("self", "none"):
        result.target["power"] = power(result.target, dists["target"], "self" if original_kind == "self"
                                       else "retain", plan.level)
    if result.reference is not None:
        result.target["verdict"] = verdict(result.target, result.reference, dists["target"],
                                           dists["reference"], plan.level)
    return dists


def roc_points(members: np.ndarray, nonmembers: np.ndarray) -> dict[str, list[float]]:
    """The ROC curve (FPR ascending, thresholds "member if score >= t") with at most MAX_CURVE_POINTS points."""
    pos = np.asarray(members, dtype=np.float64)
    neg = np.asarray(nonmembers, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return {"fpr": [], "tpr": []}
    thresholds = np.unique(np.concatenate([pos, neg, [np.inf]]))[::-1]
    fpr = (len(neg) - np.searchsorted(np.sort(neg), thresholds, side="left")) / len(neg)
    tpr = (len(pos) - np.searchsorted(np.sort(pos), thresholds, side="left")) / len(pos)
    if len(fpr) > MAX_CURVE_POINTS:
        # Geometric index steps: every point near FPR 0 is kept, the flat upper part is thinned.
        keep = np.unique(np.round(np.geomspace(1, len(fpr), MAX_CURVE_POINTS - 1)).astype(int) - 1)
        keep = np.unique(np.concatenate([[0], keep, [len(fpr) - 1]]))[:MAX_CURVE_POINTS]
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def roc_curves(result: Any) -> dict[str, dict[str, list[float]]]:
    """Forget-vs-test ROC data of every model attacked, by role."""
    curves = {}
    for role in ROLES:
        scored = result.scored.get(role)
        if scored is None:
            continue
        forget, test = scored.scores.get("forget"), scored.scores.get("test")
        if forget is not None and test is not None:
            curves[role] = roc_points(forget, test)
    return curves


def score_samples(result: Any) -> dict[str, dict[str, list[float]]]:
    """Member (forget) and non-member (test) scores per model, for the histograms (not the report)."""
    out = {}
    for role in ROLES:
        scored = result.scored.get(role)
        if scored is not None and scored.scores.get("forget") is not None and scored.scores.get("test") is not None:
            out[role] = {"members": np.asarray(scored.scores["forget"], dtype=np.float64),
                         "nonmembers": np.asarray(scored.scores["test"], dtype=np.float64)}
    return out

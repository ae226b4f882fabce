"""What an attack's numbers prove: its power on the original model, and a verdict against a reference.

**Power.** An attack that cannot tell members from non-members on the model
*before* the removal proves nothing about the removal: its numbers on the
unlearned model will look like success whatever happened. So the same attack
(the same shadow or reference models) runs on the original model, and the
95% bootstrap interval of its forget-vs-test AUC (``attacks.bootstrap``) is
checked against chance: when the interval reaches 0.5 (or lies below it) the
report says ``power.proves_nothing = true`` and the command prints one
warning. The original is, in order: ``--original CKPT``; the checkpoint
itself when its lineage holds no removal (its forget records are still
members); the parent of its last removal, found beside it by the
``parent_sha256`` its lineage records. When none is found the power is read
off the attacked model's retain records instead (records that are still
members of it), and ``power.source`` says so.

**Verdict.** With ``--reference CKPT`` (a model retrained without the forget
records, the target of exact unlearning) each metric (forget-vs-test AUC, TPR
at 1% and 0.1% FPR, forget member rate) gets the gap unlearned - reference and
its 95% interval by *paired* bootstrap: both models are resampled with the
very same record indices, so the interval is that of the gap itself, not of
two independent numbers. A metric is *indistinguishable* from the reference
when the gap's interval contains 0; ``more-member-like`` (interval above 0:
the model still remembers) or ``less-member-like`` (below 0: the removal
left a trace of its own, e.g. over-forgetting) otherwise.

**Gate.** ``--max-gap F`` passes only when every metric's gap interval lies
inside [-F, F], i.e. the data show the gap is at most F (an equivalence test
at the interval's level). A gap whose point is small but whose interval is
wide (too few records to tell) fails: the gate asks for proof, not for the
absence of evidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.attacks.bootstrap import LEVEL, interval

#: AUC of an attack that cannot tell members from non-members.
CHANCE = 0.5
POWER_WARNING = ("this attack cannot tell members from non-members on this model; its result proves nothing "
                 "(the original model's forget-vs-test AUC {auc} has 95% interval {ci}, not above chance, 0.5)")
#: The verdict's metrics: report key -> bootstrap distribution key.
VERDICT_METRICS = {
    "auc": "forget.auc",
    "tpr_at_1pct_fpr": "forget.tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr": "forget.tpr_at_0.1pct_fpr",
    "member_rate": "forget.member_rate",
}
LABELS = {"auc": "forget-vs-test AUC", "tpr_at_1pct_fpr": "TPR at 1% FPR", "tpr_at_0.1pct_fpr": "TPR at 0.1% FPR",
          "member_rate": "forget-set member rate"}
SOURCES = {
    "original": "the original model (--original or the lineage parent)",
    "self": "the attacked checkpoint itself (no removal in its lineage: its forget records are members)",
    "retain": "the attacked model's retain records (no original model found)",
}


def _point(entry: dict[str, Any], dist_key: str) -> float | None:
    split, key = dist_key.split(".", 1)
    value = (entry.get(split) or {}).get(key)
    return None if value is None else float(value)


def power(entry: dict[str, Any], dists: dict[str, np.ndarray], source: str, level: float = LEVEL) -> dict[str, Any]:
    """The attack's power from the model entry ``entry`` (``source``: original, self or retain)."""
    rows = "retain" if source == "retain" else "forget"
    auc = _point(entry, f"{rows}.auc")
    ci = interval(dists[f"{rows}.auc"], level) if f"{rows}.auc" in dists else None
    return {
        "original_auc": auc,
        "ci": ci,
        "proves_nothing": ci is None or ci[0] <= CHANCE,
        "source": source,
        "rows": f"{rows} vs test",
        "n_members": (entry.get(rows) or {}).get("n"),
        "n_nonmembers": (entry.get("test") or {}).get("n"),
    }


def power_warning(power_entry: dict[str, Any]) -> str:
    auc, ci = power_entry.get("original_auc"), power_entry.get("ci")
    shown_ci = "unavailable" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
    text = POWER_WARNING.format(auc="-" if auc is None else f"{auc:.3f}", ci=shown_ci)
    if power_entry.get("source") == "retain":
        text += "; measured on the attacked model's retain records, as no original model was found"
    return text


def verdict(target: dict[str, Any], reference: dict[str, Any], target_dists: dict[str, np.ndarray],
            reference_dists: dict[str, np.ndarray], level: float = LEVEL) -> dict[str, Any]:
    """Per metric: both points, the gap, its paired-bootstrap interval and what it says."""
    metrics: dict[str, Any] = {}
    for key, dist_key in VERDICT_METRICS.items():
        t, r = _point(target, dist_key), _point(reference, dist_key)
        if t is None or r is None or dist_key not in target_dists or dist_key not in reference_dists:
            continue
        ci = interval(target_dists[dist_key] - reference_dists[dist_key], level)
        if ci is None:
            continue
        reading = ("indistinguishable" if ci[0] <= 0.0 <= ci[1]
                   else "more-member-like" if ci[0] > 0.0 else "less-member-like")
        metrics[key] = {"target": t, "reference": r, "gap": t - r, "gap_ci": ci, "verdict": reading}
    return {
        "rule": "paired bootstrap: indistinguishable when the gap's interval contains 0",
        "level": level,
        "indistinguishable": bool(metrics) and all(m["verdict"] == "indistinguishable" for m in metrics.values()),
        "metrics": metrics,
    }


def gap_failures(verdict_entry: dict[str, Any], max_gap: float) -> tuple[list[str], list[str]]:
    """(failures, passes) of ``--max-gap``: each metric's gap interval must lie inside [-max_gap, max_gap].

    At most one failure line, naming every metric outside with its gap and interval; else one pass
    line naming the widest bound.
    """
    outside, widest = [], None
    for key, m in verdict_entry["metrics"].items():
        lo, hi = m["gap_ci"]
        bound = max(abs(lo), abs(hi))
        if bound > max_gap:
            outside.append(f"{LABELS[key]} {m['gap']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        elif widest is None or bound > widest[1]:
            widest = (key, bound)
    if outside:
        return [f"gap to the reference is not within --max-gap {max_gap:g} (gap [95% interval]): "
                + ", ".join(outside)], []
    if widest is None:
        return [], []
    return [], [f"gate passed: every gap's 95% interval is within --max-gap {max_gap:g} "
                f"(widest: {LABELS[widest[0]]}, {widest[1]:.4f})"]

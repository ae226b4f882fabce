"""Bootstrap intervals, the power check and the verdict, on score sets whose truth is known.

The coverage test draws Gaussian member scores N(d, 1) and non-member scores
N(0, 1), whose AUC is Phi(d / sqrt 2), 100 times with seeded generators and
counts how often the 95% interval holds the true value (and the true member
rate of Bernoulli decisions); a correct interval covers about 95% of the time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from unlearn_cli.attacks.bootstrap import (
    Plan, attach_intervals, counts, distributions, interval, weighted_auc, weighted_tpr_at_fpr,
)
from unlearn_cli.attacks.metrics import roc_auc, tpr_at_fpr
from unlearn_cli.attacks.proof import MAX_CURVE_POINTS, roc_points
from unlearn_cli.attacks.verdict import gap_failures, power, power_warning, verdict


def test_resampled_numbers_equal_the_plain_functions_on_the_resampled_records() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        n_pos, n_neg = int(rng.integers(1, 30)), int(rng.integers(1, 250))
        pos = rng.integers(0, 9, n_pos).astype(float)      # integer scores: many ties
        neg = rng.integers(0, 7, n_neg).astype(float)
        wp, wn = counts(n_pos, 4, rng), counts(n_neg, 4, rng)
        aucs = weighted_auc(pos, neg, wp, wn)
        tprs = {f: weighted_tpr_at_fpr(pos, neg, wp, wn, f) for f in (0.001, 0.01, 0.1, 0.5)}
        for b in range(4):
            p, n = np.repeat(pos, wp[b]), np.repeat(neg, wn[b])
            assert aucs[b] == pytest.approx(roc_auc(p, n), abs=1e-12)
            for f, values in tprs.items():
                assert values[b] == pytest.approx(tpr_at_fpr(p, n, f), abs=1e-12), (f, b)


def test_intervals_cover_the_true_auc_and_member_rate() -> None:
    d, n, p_true = 1.0, 200, 0.3
    true_auc = norm.cdf(d / math.sqrt(2))                 # 0.760
    covered_auc = covered_rate = 0
    reps = 100
    for rep in range(reps):
        rng = np.random.default_rng(1000 + rep)
        members, nonmembers = rng.normal(d, 1, n), rng.normal(0, 1, n)
        decisions = rng.random(n) < p_true
        plan = Plan.make({"forget": n, "test": n}, seed=rep)
        wp, wn = plan.weights["forget"], plan.weights["test"]
        lo, hi = interval(weighted_auc(members, nonmembers, wp, wn))   # what distributions() computes
        covered_auc += lo <= true_auc <= hi
        lo, hi = interval(wp @ decisions / n)
        covered_rate += lo <= p_true <= hi
    print(f"coverage of the 95% intervals over {reps} data sets: AUC {covered_auc / reps:.2f}, "
          f"member rate {covered_rate / reps:.2f}")
    assert covered_auc / reps >= 0.85, f"AUC {true_auc:.3f} covered {covered_auc}/{reps}"
    assert covered_rate / reps >= 0.85, f"member rate {p_true} covered {covered_rate}/{reps}"


def test_the_plan_is_seeded_and_pairs_models() -> None:
    rng = np.random.default_rng(3)
    scores = {"forget": rng.normal(1, 1, 50), "test": rng.normal(0, 1, 80)}
    decisions = {k: v > 0.5 for k, v in scores.items()}
    a = distributions(scores, decisions, Plan.make({"forget": 50, "test": 80}, seed=7))
    b = distributions(scores, decisions, Plan.make({"forget": 50, "test": 80}, seed=7))
    c = distributions(scores, decisions, Plan.make({"forget": 50, "test": 80}, seed=8))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["forget.auc"], c["forget.auc"])
    entry = {"forget": {"auc": roc_auc(scores["forget"], scores["test"]), "member_rate": 0.5}, "test": {}}
    attach_intervals(entry, a)
    assert entry["auc_ci"] == entry["forget"]["auc_ci"]
    assert entry["auc_ci"][0] < entry["forget"]["auc"] < entry["auc_ci"][1]
    assert "member_rate_ci" in entry["test"] and "tpr_at_0.1pct_fpr_ci" in entry
    # The same model against itself: every resampled gap is 0 (the resamples are paired).
    same = verdict(entry, entry, a, b)
    assert same["indistinguishable"]
    assert all(m["gap_ci"] == [0.0, 0.0] for m in same["metrics"].values())
    assert gap_failures(same, 0.0) == ([], [gap_failures(same, 0.0)[1][0]])


def _entry_and_dists(shift: float, seed: int, n: int = 150):
    rng = np.random.default_rng(seed)
    members, nonmembers = rng.normal(shift, 1, n), rng.normal(0, 1, 2 * n)
    scores = {"forget": members, "test": nonmembers}
    decisions = {"forget": members > 0.5, "test": nonmembers > 0.5}
    dists = distributions(scores, decisions, Plan.make({"forget": n, "test": 2 * n}, seed=0))
    entry = {"forget": {"n": n, "auc": roc_auc(members, nonmembers), "member_rate": float(decisions["forget"].mean()),
                        "tpr_at_1pct_fpr": tpr_at_fpr(members, nonmembers, 0.01),
                        "tpr_at_0.1pct_fpr": tpr_at_fpr(members, nonmembers, 0.001)},
             "test": {"n": 2 * n}}
    return entry, dists


def test_power_proves_nothing_at_chance_and_something_when_separated() -> None:
    chance = power(*_entry_and_dists(0.0, 1), source="original")
    strong = power(*_entry_and_dists(1.5, 1), source="original")
    assert chance["proves_nothing"] and chance["ci"][0] <= 0.5 <= chance["ci"][1]
    assert not strong["proves_nothing"] and strong["ci"][0] > 0.5
    assert "cannot tell members from non-members on this model; its result proves nothing" in power_warning(chance)


def test_verdict_reads_a_remembering_model_as_more_member_like_and_the_gate_names_it() -> None:
    target, target_d = _entry_and_dists(1.5, 2)
    reference, reference_d = _entry_and_dists(0.0, 3)
    v = verdict(target, reference, target_d, reference_d)
    assert not v["indistinguishable"]
    assert v["metrics"]["auc"]["verdict"] == "more-member-like"
    assert v["metrics"]["auc"]["gap"] == pytest.approx(target["forget"]["auc"] - reference["forget"]["auc"])
    failures, passes = gap_failures(v, 0.1)
    assert passes == [] and len(failures) == 1
    assert failures[0].startswith("gap to the reference is not within --max-gap 0.1")
    assert "forget-vs-test AUC +" in failures[0]
    reversed_v = verdict(reference, target, reference_d, target_d)
    assert reversed_v["metrics"]["auc"]["verdict"] == "less-member-like"


def test_roc_points_are_thinned_monotone_and_span_the_square() -> None:
    rng = np.random.default_rng(0)
    curve = roc_points(rng.normal(1, 1, 3000), rng.normal(0, 1, 3000))
    fpr, tpr = np.array(curve["fpr"]), np.array(curve["tpr"])
    assert 50 <= len(fpr) <= MAX_CURVE_POINTS
    assert fpr[0] == 0.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert (fpr < 0.01).sum() >= 10          # the low-FPR corner keeps its detail


def test_add_evidence_handles_missing_rows_and_every_original_kind() -> None:
    from types import SimpleNamespace

    from unlearn_cli.attacks.base import Scored, Splits, summarize
    from unlearn_cli.attacks.proof import add_evidence

    rng = np.random.default_rng(5)
    splits = Splits(np.arange(40), np.arange(40, 100), np.arange(100, 180), np.arange(40, 100))

    def scored(shift: float, retain: bool = True) -> Scored:
        s = {"forget": rng.normal(shift, 1, 40), "retain": rng.normal(shift, 1, 60) if retain else None,
             "test": rng.normal(0, 1, 80)}
        return Scored(s, {k: None if v is None else v > 0.5 for k, v in s.items()})

    def result(**models):
        entries = {role: summarize(s, splits) for role, s in models.items()}
        return SimpleNamespace(splits=splits, scored=models, target=entries["target"],
                               original=entries.get("original"), reference=entries.get("reference"))

    # forget-quality style: no retain scores, no power measured (kind None).
    fq = result(target=scored(0.0, retain=False))
    add_evidence(fq, None, seed=0)
    assert "power" not in fq.target and "auc_ci" in fq.target and "auc_ci" not in fq.target["retain"]
    # No original found: the power is read off the target's retain rows (members of it).
    none = result(target=scored(2.0))
    add_evidence(none, "none", seed=0)
    assert none.target["power"]["source"] == "retain" and none.target["power"]["rows"] == "retain vs test"
    assert none.target["power"]["proves_nothing"] is False
    # An original that memorised, a target and reference that did not: power yes, verdict indistinguishable.
    full = result(target=scored(0.0), original=scored(2.0), reference=scored(0.0))
    add_evidence(full, "original", seed=0)
    assert full.target["power"]["source"] == "original" and not full.target["power"]["proves_nothing"]
    assert full.original["auc_ci"][0] > 0.8
    assert full.target["verdict"]["metrics"]["auc"]["verdict"] == "indistinguishable"

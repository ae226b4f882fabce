"""Attack summary numbers and the forget-quality score on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearn_cli.attacks.metrics import (
    balanced_accuracy,
    epsilon_from_rates,
    epsilon_score,
    forgetting_quality,
    member_rate,
    record_epsilon,
    roc_auc,
    tpr_at_fpr,
)
from unlearn_cli.attacks.signals import logit_confidence, per_record_loss, shokri_features


def test_auc_hand_cases() -> None:
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5          # ties count one half
    # The textbook case: members 0.35, 0.8; non-members 0.1, 0.4 -> 3 of 4 pairs ordered.
    assert roc_auc([0.35, 0.8], [0.1, 0.4]) == 0.75
    assert roc_auc([], [1.0]) is None


def test_tpr_at_fpr_picks_best_threshold_within_budget() -> None:
    members = [0.9, 0.8, 0.3]
    nonmembers = [0.85, 0.5] + [0.1] * 98           # two non-members score high
    # At FPR <= 1% one non-member may pass: threshold 0.8 lets 2 of 3 members through
    # (0.3 would let 0.5 through as well: FPR 2%).
    assert tpr_at_fpr(members, nonmembers, 0.01) == pytest.approx(2 / 3)
    # At FPR = 0 only scores above 0.85 count.
    assert tpr_at_fpr(members, nonmembers, 0.0) == pytest.approx(1 / 3)
    assert tpr_at_fpr(members, nonmembers, 1.0) == 1.0


def test_member_rate_and_balanced_accuracy() -> None:
    assert member_rate([True, False, True, True]) == 0.75
    assert member_rate([]) is None
    # TPR 1, FPR 0.5 -> (1 + 0.5) / 2.
    assert balanced_accuracy([True, True], [True, False]) == 0.75


def test_epsilon_no_attack_scores_one() -> None:
    same = [0.1, 0.5, 0.9, 1.3]
    eps = record_epsilon(same, same)
    assert eps == 0.0
    assert epsilon_score(eps) == 1.0


def test_epsilon_perfectly_separable_scores_zero() -> None:
    eps = record_epsilon([3.0, 4.0, 5.0], [0.0, 1.0, 2.0])
    assert math.isinf(eps)
    assert epsilon_score(eps) == 0.0
    # Separation in the other direction is as bad.
    assert math.isinf(record_epsilon([0.0, 1.0], [3.0, 4.0]))


def test_epsilon_hand_worked_partial_overlap() -> None:
    # Retrained 0,1,2,3; unlearned 1.5,2.5,3.5,4.5. Threshold 2 ("unlearned if > 2"):
    # FPR = 1/4 (3), FNR = 1/4 (1.5): eps = log((1 - delta - 1/4) / (1/4)) = log 3 (less delta).
    # Every other threshold is weaker or has FPR or FNR exactly 0 (discarded).
    delta = 1e-5
    eps = record_epsilon([1.5, 2.5, 3.5, 4.5], [0.0, 1.0, 2.0, 3.0], delta)
    assert eps == pytest.approx(math.log((0.75 - delta) / 0.25))
    assert epsilon_score(eps) == 0.25               # bin [1.0, 1.5) is n = 3: 2 / 2^3


def test_epsilon_from_rates_rules() -> None:
    assert math.isinf(epsilon_from_rates([0.0], [0.0]))
    assert epsilon_from_rates([0.0, 0.5], [0.3, 0.5]) == 0.0   # one-zero attack discarded; chance -> 0
    assert epsilon_from_rates([0.1], [0.1], delta=0.0) == pytest.approx(math.log(9))


@pytest.mark.parametrize("eps, score", [(0.0, 1.0), (0.49, 1.0), (0.5, 0.5), (0.99, 0.5), (1.2, 0.25),
                                        (2.6, 2 / 2**6), (math.inf, 0.0)])
def test_epsilon_score_bins(eps: float, score: float) -> None:
    assert epsilon_score(eps) == score


def test_forgetting_quality_averages_records() -> None:
    unlearned = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0]])
    retrained = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])   # record 0 identical, record 1 separable
    score, eps = forgetting_quality(unlearned, retrained)
    assert score == 0.5
    assert eps[0] == 0.0 and math.isinf(eps[1])


def test_logit_confidence_is_stable_and_exact() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [60.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 0, 2])
    phi = logit_confidence(logits, labels)
    p = np.exp(2.0) / np.exp([2.0, 0.0, -1.0]).sum()
    assert phi[0] == pytest.approx(math.log(p / (1 - p)))
    # p_y rounds to 1 in float64 here; the stable form still gives 60 - log 2.
    assert phi[1] == pytest.approx(60.0 - math.log(2.0))
    assert phi[2] == pytest.approx(math.log(0.5))
    loss = per_record_loss(logits, labels)
    assert loss[0] == pytest.approx(-math.log(p))


def test_shokri_features_are_sorted_and_label_aware() -> None:
    logits = np.array([[0.0, 3.0], [3.0, 0.0]])
    f = shokri_features(logits, np.array([1, 1]))
    # Same sorted vector for both rows; only the true-label confidence differs.
    assert np.allclose(f[0, :2], f[1, :2])
    assert f[0, 2] == pytest.approx(3.0) and f[1, 2] == pytest.approx(-3.0)

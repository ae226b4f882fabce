"""calibrate library: the calibration metrics, temperature scaling, Algorithm 3's categories."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_cli.diagnostics.algorithms import algorithm3
from unlearn_cli.diagnostics.heldout import split_holdout
from unlearn_cli.diagnostics.calibration_metrics import (
    adaptive_ece, calibration_metrics, classwise_ece, fit_temperature, max_calibration_error, reliability_table,
    softmax,
)
from unlearn_cli.errors import BadInput
from unlearn_cli.models.predict import ece


def _calibrated(n: int, seed: int, classes: int = 3, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, (n, classes))
    probs = softmax(logits)
    labels = (rng.uniform(size=(n, 1)) > probs.cumsum(1)).sum(1)
    return logits, labels


def test_metrics_of_a_hand_made_case():
    # two bins used: confidence 0.95 (4 records, 3 right) and 0.65 (2 records, 1 right)
    probs = np.array([[0.95, 0.05]] * 4 + [[0.35, 0.65]] * 2)
    labels = np.array([0, 0, 0, 1, 1, 0])
    m = calibration_metrics(probs, labels)
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    expected_ece = 4 / 6 * abs(0.75 - 0.95) + 2 / 6 * abs(0.5 - 0.65)
    assert m["ece"] == pytest.approx(expected_ece)
    assert m["mce"] == pytest.approx(0.2)
    assert m["nll"] == pytest.approx(-(3 * np.log(0.95) + np.log(0.05) + np.log(0.65) + np.log(0.35)) / 6)
    assert m["brier"] == pytest.approx((3 * 2 * 0.05**2 + 2 * 0.95**2 + 2 * 0.35**2 + 2 * 0.65**2) / 6)
    used = [row for row in m["reliability"] if row["count"]]
    assert [row["count"] for row in used] == [2, 4]
    assert used[1]["confidence"] == pytest.approx(0.95) and used[1]["accuracy"] == pytest.approx(0.75)
    assert len(m["reliability"]) == 15 and sum(row["count"] for row in m["reliability"]) == 6
    assert m["reliability"][0]["lower"] == 0.0 and m["reliability"][-1]["upper"] == 1.0


def test_ece_matches_the_shared_metric_and_a_calibrated_model_scores_low():
    logits, labels = _calibrated(20000, seed=0)
    probs = softmax(logits)
    m = calibration_metrics(probs, labels)
    assert m["ece"] == pytest.approx(ece(probs, labels))
    assert m["ece"] < 0.02 and m["adaptive_ece"] < 0.02 and m["classwise_ece"] < 0.02
    assert max_calibration_error(probs, labels) >= m["ece"]
    over = softmax(3 * logits)  # the same predictions, over-confident
    assert ece(over, labels) > 0.1 and adaptive_ece(over, labels) > 0.1 and classwise_ece(over, labels) > 0.03


def test_perfect_one_hot_predictions_have_zero_error():
    probs = np.eye(3)[[0, 1, 2, 1]]
    m = calibration_metrics(probs, np.array([0, 1, 2, 1]))
    assert m["ece"] == 0 and m["mce"] == 0 and m["brier"] == 0 and m["nll"] == pytest.approx(0, abs=1e-9)
    assert m["classwise_ece"] == 0 and m["adaptive_ece"] == 0


def test_temperature_scaling_recovers_the_temperature_that_was_applied():
    logits, labels = _calibrated(20000, seed=1)
    assert fit_temperature(3.0 * logits, labels) == pytest.approx(3.0, rel=0.08)
    assert fit_temperature(0.5 * logits, labels) == pytest.approx(0.5, rel=0.08)
    with pytest.raises(BadInput):
        fit_temperature(logits[:0], labels[:0])


def test_algorithm3_sorts_low_influence_records_into_three_categories():
    influence = np.array([-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    confidence = np.array([0.99, 0.51, 0.8, 0.97, 0.52, 0.53, 0.7, 0.96, 0.75, 0.6])
    sets = algorithm3(influence, confidence, 4)
    # L_if = {0,1,2,3}; L_cf = {1,4,5,9}; H_cf = {0,3,7,2}
    assert sorted(sets["over_confident"]) == [0, 2, 3]
    assert sorted(sets["over_uncertain"]) == [1]
    assert sorted(sets["other_noise"]) == []
    sets = algorithm3(influence, confidence, 2)
    # L_if = {0,1}; L_cf = {1,4}; H_cf = {0,3}
    assert list(sets["over_confident"]) == [0] and list(sets["over_uncertain"]) == [1]


def test_holdout_split_is_seeded_disjoint_and_complete():
    rows = np.arange(100, 200)
    fit, held = split_holdout(rows, 0.2, seed=3)
    assert len(held) == 20 and len(fit) == 80
    assert sorted(np.concatenate([fit, held])) == list(rows)
    again = split_holdout(rows, 0.2, seed=3)
    assert np.array_equal(again[0], fit) and np.array_equal(again[1], held)
    with pytest.raises(BadInput):
        split_holdout(rows[:2], 0.1, seed=0)


def test_reliability_table_bins_confidence_one_into_the_top_bin():
    table = reliability_table(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 1]))
    assert table[-1]["count"] == 1 and table[7]["count"] == 1

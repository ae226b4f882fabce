"""Accuracy, loss and ECE against hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearn_cli.models.predict import ECE_BINS, ece, predict_logits, summarize


def _probs(confidences, predicted, classes=2):
    """Rows whose max probability is ``confidence`` on class ``predicted``, the rest spread evenly."""
    rows = []
    for conf, cls in zip(confidences, predicted):
        row = np.full(classes, (1.0 - conf) / (classes - 1))
        row[cls] = conf
        rows.append(row)
    return np.array(rows)


def test_perfectly_calibrated_is_zero():
    # Ten rows at confidence 0.8, eight of them right: accuracy equals confidence.
    probs = _probs([0.8] * 10, [0] * 10)
    labels = np.array([0] * 8 + [1] * 2)
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_perfectly_calibrated_in_several_bins_is_zero():
    # Bin at 0.6 with 3/5 right, bin at 0.9 with 9/10 right, bin at 1.0 all right.
    probs = _probs([0.6] * 5 + [0.9] * 10 + [1.0] * 3, [1] * 18)
    labels = np.array([1, 1, 1, 0, 0] + [1] * 9 + [0] + [1] * 3)
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_all_confident_half_right_is_one_half():
    probs = _probs([1.0] * 10, [0] * 10)
    labels = np.array([0, 1] * 5)
    assert ece(probs, labels) == pytest.approx(0.5, abs=1e-12)


def test_all_confident_all_wrong_is_one():
    probs = _probs([1.0] * 4, [0] * 4)
    assert ece(probs, np.ones(4, dtype=int)) == pytest.approx(1.0)


def test_two_bins_hand_worked():
    # Bin A: confidence 0.9, 1 of 2 right -> gap 0.4, weight 1/2.
    # Bin B: confidence 0.6, 2 of 2 right -> gap 0.4, weight 1/2.   ECE = 0.4.
    probs = _probs([0.9, 0.9, 0.6, 0.6], [0, 0, 1, 1])
    labels = np.array([0, 1, 1, 1])
    assert ece(probs, labels) == pytest.approx(0.4, abs=1e-12)


def test_unequal_bin_weights_hand_worked():
    # Three classes. Bin 0.5: 3 rows, 1 right (gap 1/6). Bin 0.95: 1 row, right (gap 0.05).
    # ECE = 3/4 * 1/6 + 1/4 * 0.05 = 0.125 + 0.0125 = 0.1375.
    probs = _probs([0.5, 0.5, 0.5, 0.95], [2, 2, 2, 0], classes=3)
    labels = np.array([2, 0, 1, 0])
    assert ece(probs, labels) == pytest.approx(0.1375, abs=1e-12)


def test_rows_in_the_same_bin_are_averaged_before_the_gap():
    # Confidences 0.7 and 0.72 share the bin (10/15, 11/15], one right and one wrong:
    # |0.5 - 0.71| = 0.21, not the mean of the per-row gaps (0.5).
    assert 2 / 3 < 0.7 < 0.72 <= 11 / 15
    probs = _probs([0.7, 0.72], [0, 0])
    assert ece(probs, np.array([0, 1])) == pytest.approx(0.21, abs=1e-12)


def test_bin_count_and_empty_input():
    assert ECE_BINS == 15
    assert math.isnan(ece(np.zeros((0, 2)), np.zeros(0, dtype=int)))
    # With one bin, ECE is |accuracy - mean confidence|.
    probs = _probs([0.6, 0.9, 0.7], [0, 0, 0])
    assert ece(probs, np.array([0, 1, 1]), bins=1) == pytest.approx(abs(1 / 3 - (0.6 + 0.9 + 0.7) / 3))


def test_summarize_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0],
                           [0.0, 3.0, 0.0],
                           [1.0, 1.5, 0.5],
                           [-2.0, 0.0, 4.0]])
    labels = np.array([0, 1, 0, 1])  # rows 0 and 1 right, rows 2 and 3 wrong
    out = summarize(logits, labels)
    x = logits.double().numpy()
    log_probs = x - np.log(np.exp(x).sum(1, keepdims=True))
    expected_loss = -np.mean(log_probs[np.arange(4), labels])
    assert out["n"] == 4
    assert out["accuracy"] == 0.5
    assert out["loss"] == pytest.approx(expected_loss, rel=1e-6)
    probs = np.exp(log_probs)
    assert out["ece"] == pytest.approx(ece(probs, labels), abs=1e-6)
    assert set(out) == {"n", "accuracy", "loss", "ece"}
    assert all(isinstance(out[k], float) for k in ("accuracy", "loss", "ece"))


def test_summarize_accepts_tensor_labels_and_perfect_predictions():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    out = summarize(logits, torch.tensor([0, 1]))
    assert out["accuracy"] == 1.0
    assert out["loss"] == pytest.approx(2 * math.log1p(math.exp(-20)) / 2, abs=1e-7)


def test_summarize_empty_split():
    assert summarize(torch.empty(0, 2), np.zeros(0, dtype=int)) == {
        "n": 0, "accuracy": None, "loss": None, "ece": None}


def test_predict_logits_batches_and_uses_eval_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.9), torch.nn.Linear(4, 2))
    model.train()
    x = torch.randn(10, 3)
    out = predict_logits(model, x, batch_size=3)
    assert not model.training
    with torch.no_grad():
        assert torch.equal(out, model(x))
    assert not out.requires_grad
    assert predict_logits(model, x[:0]).numel() == 0

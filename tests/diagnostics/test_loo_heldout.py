"""The default label ranker's leave-one-out, the issue count and table, puma's orientation, calibrate's held-out rule."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from unlearn_cli.diagnostics.heldout import fold_temperature, held_out_rows
from unlearn_cli.diagnostics.kfold import stratified_folds
from unlearn_cli.diagnostics.loo import _gram, estimate_issues, kernel_loo, loo_margin, pseudo_probabilities
from unlearn_cli.diagnostics.rankers import orient
from unlearn_cli.errors import BadInput


def blobs(n: int = 200, flip: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 2)) * 0.7 + np.where(labels[:, None] == 1, 2.0, -2.0)
    flipped = rng.choice(n, flip, replace=False)
    given = labels.copy()
    given[flipped] = 1 - given[flipped]
    return x, given, np.sort(flipped)


def test_kernel_loo_ranks_the_flipped_labels_first():
    x, given, flipped = blobs()
    loo, info = kernel_loo(x, given, 2, seed=0)
    score = loo_margin(loo, given)
    first = np.sort(np.argsort(score, kind="stable")[: len(flipped)])
    assert np.isin(first, flipped).mean() >= 0.9, info
    count, mask = estimate_issues(pseudo_probabilities(loo), given)
    assert 10 <= count <= 40 and mask.sum() == count  # 20 flipped: a count of the right size


def test_kernel_loo_is_the_exact_leave_one_out_refit():
    import torch

    x, given, _ = blobs(n=60, flip=6, seed=1)
    loo, info = kernel_loo(x, given, 2, seed=0)
    xt = torch.as_tensor(x)
    gram = _gram(xt, info["bandwidth_x_median_sq_distance"], info["median_sq_distance"]).numpy()
    y = np.eye(2)[given]
    for i in (0, 7, 33):
        rest = np.delete(np.arange(60), i)
        alpha = np.linalg.solve(gram[np.ix_(rest, rest)] + info["ridge"] * np.eye(59), y[rest])
        assert np.allclose(gram[i, rest] @ alpha, loo[i], atol=1e-6)  # refit without i, predict i


def test_estimate_counts_records_above_another_class_threshold():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.85, 0.15]])
    labels = np.array([0, 0, 0, 1, 1])  # record 2 looks like class 1, record 4 like class 0
    count, mask = estimate_issues(probs, labels)
    assert count == 2 and list(np.flatnonzero(mask)) == [2, 4]


def test_puma_orientation_follows_the_models_least_confident_records():
    influence = np.array([5.0, 4.0, -1.0, -2.0, 0.0, 1.0])
    doubted = np.array([0.1, 0.2, 0.9, 0.9, 0.9, 0.9])  # the model doubts records 0 and 1: high psi
    assert orient(influence, doubted, 2)[0] == -1
    assert orient(-influence, doubted, 2)[0] == 1  # the paper's reading: harmful = negative psi


def test_stratified_folds_deal_every_class_over_every_fold():
    labels = np.array([0] * 10 + [1] * 5)
    folds = stratified_folds(labels, 5, seed=0)
    for f in range(5):
        assert (labels[folds == f] == 0).sum() == 2 and (labels[folds == f] == 1).sum() == 1
    with pytest.raises(BadInput, match="--folds"):
        stratified_folds(labels[:3], 5, seed=0)


def dataset(validation=(), test=()):
    return SimpleNamespace(validation_indices=lambda: np.array(validation, dtype=np.int64),
                           test_indices=lambda: np.array(test, dtype=np.int64),
                           manifest_path=Path("m.yaml"), name="m")


def test_held_out_rows_prefers_the_validation_split_and_else_carves_the_test_split():
    fit, report, what = held_out_rows(dataset(validation=[1, 2], test=[3, 4, 5]), 0.5, seed=0)
    assert list(fit) == [1, 2] and list(report) == [3, 4, 5] and what["fit"] == "validation split"
    fit, report, what = held_out_rows(dataset(test=list(range(10, 30))), 0.5, seed=0)
    assert len(fit) == len(report) == 10 and not set(fit) & set(report)
    assert sorted([*fit, *report]) == list(range(10, 30)) and "test split" in what["fit"]
    again = held_out_rows(dataset(test=list(range(10, 30))), 0.5, seed=0)
    assert list(again[0]) == list(fit)  # seeded
    fit, report, _ = held_out_rows(dataset(validation=list(range(8))), 0.5, seed=1)
    assert len(fit) == len(report) == 4
    with pytest.raises(BadInput, match="only a train split; add splits.validation or a test split"):
        held_out_rows(dataset(), 0.5, seed=0)
    with pytest.raises(BadInput, match="at least 2"):
        held_out_rows(dataset(test=[3]), 0.5, seed=0)


def test_a_folded_temperature_divides_the_logits():
    import torch

    from unlearn_cli.influence.scores import FunctionalModel

    torch.manual_seed(0)
    fmodel = FunctionalModel.of(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)))
    x = torch.randn(10, 3)
    folded = fold_temperature(fmodel, fmodel.params, 2.5, x)
    assert torch.allclose(fmodel(folded, x), fmodel(fmodel.params, x) / 2.5, atol=1e-6)
    tail = FunctionalModel.of(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()))
    assert fold_temperature(tail, tail.params, 2.5, x) is None  # logits not straight from the linear layer


def test_issue_table_as_csv_and_json():
    from unlearn_cli.diagnostics.table import issue_table

    ranking = SimpleNamespace(order=np.array([1, 0]), rows=np.array([4, 7]), score=np.array([0.5, -0.2]),
                              predicted=np.array([0, 1]), confidence=np.array([0.9, 0.3]),
                              oos_probs=np.array([[0.8, 0.2], [0.1, 0.9]]))
    data = SimpleNamespace(ids=np.array([f"r{i}" for i in range(8)]), y=np.array([0] * 8))
    issue = np.array([False, True])
    text = issue_table(ranking, data, issue, ".csv").splitlines()
    assert text[0] == "rank,id,given_label,predicted_label,suggested_label,score,p_given,is_label_issue"
    assert text[1] == "1,r7,0,1,1,-0.2,0.3,yes" and text[2] == "2,r4,0,0,0,0.5,0.9,no"
    rows = json.loads(issue_table(ranking, data, issue, ".json"))
    assert rows[0]["id"] == "r7" and rows[0]["is_label_issue"] is True and rows[1]["suggested_label"] == 0


def test_many_records_switch_to_random_features_and_still_find_the_flips(monkeypatch):
    from unlearn_cli.diagnostics import loo as module

    monkeypatch.setattr(module, "EXACT_MAX", 100)
    x, given, flipped = blobs(n=400, flip=40, seed=2)
    scores, info = kernel_loo(x, given, 2, seed=0)
    assert "random Fourier features" in info["kernel"]
    first = np.argsort(loo_margin(scores, given), kind="stable")[: len(flipped)]
    assert np.isin(first, flipped).mean() >= 0.9

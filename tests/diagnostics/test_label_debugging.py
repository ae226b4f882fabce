"""debug-labels library: Algorithm 2, the flipped-label protocol, and the rankers on a separable case."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_blobs
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.diagnostics.algorithms import algorithm2, algorithm2_order
from unlearn_cli.diagnostics.labels import (
    FRACTIONS, evaluate, flip_labels, optimal_curve, random_curve, rank, share_found,
)
from unlearn_cli.diagnostics.rankers import RANKERS
from unlearn_cli.errors import BadInput


def test_algorithm2_keeps_candidates_that_pass_the_mean_influence_check():
    influence = np.array([-3.0, -2.9, -0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    confidence = np.array([0.5, 0.55, 0.05, 0.6, 0.65, 0.99, 0.98, 0.7, 0.75, 0.8])
    chosen, info = algorithm2(influence, confidence, 3)
    # L_if = {0, 1, 2} is also the 3 least confident records: nothing is left as a candidate
    assert list(chosen) == [] and info["candidates"] == 0 and info["check_passed"] is None
    confidence = np.array([0.5, 0.55, 0.05, 0.3, 0.4, 0.99, 0.98, 0.7, 0.75, 0.8])
    chosen, info = algorithm2(influence, confidence, 3)
    # L_cf = {2, 3, 4}; H_cf = {5, 6, 9}: S = {0, 1}, mean -2.95 <= mean of L_if n L_cf = -0.5: kept
    assert list(chosen) == [0, 1]
    assert info["check_passed"] is True and info["selected"] == 2


def test_algorithm2_check_empties_a_set_less_harmful_than_the_low_confidence_records():
    influence = np.array([-3.0, -2.0, -1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    confidence = np.array([0.01, 0.5, 0.6, 0.3, 0.95, 0.99, 0.7, 0.8])
    # k=3: L_if = {0,1,2}; L_cf = {0,3,1}; H_cf = {5,4,7}: S = {2} (mean -1) > mean(L_if n L_cf) = -2.5
    chosen, info = algorithm2(influence, confidence, 3)
    assert list(chosen) == [] and info["candidates"] == 1 and info["check_passed"] is False
    order, _ = algorithm2_order(influence, confidence, 3)
    assert list(order) == list(np.argsort(influence, kind="stable"))


def test_algorithm2_order_is_a_permutation_with_the_selected_set_first():
    rng = np.random.default_rng(0)
    influence = rng.normal(size=200)
    confidence = rng.uniform(size=200)
    order, info = algorithm2_order(influence, confidence, 30)
    assert sorted(order) == list(range(200))
    chosen, _ = algorithm2(influence, confidence, 30)
    assert list(order[: len(chosen)]) == list(chosen)
    rest = order[len(chosen):]
    assert np.all(np.diff(influence[rest]) >= 0)


def test_share_found_and_reference_curves():
    ranked = np.array([3, 7, 1, 0, 2, 4, 5, 6, 8, 9])
    flipped = np.array([3, 1])
    assert share_found(ranked, flipped, (0.1, 0.2, 0.3, 1.0)) == [0.5, 0.5, 1.0, 1.0]
    assert optimal_curve(10, 2, (0.1, 0.2, 0.5)) == [0.5, 1.0, 1.0]
    assert random_curve(10, (0.1, 0.5)) == [0.1, 0.5]


@pytest.fixture(scope="module")
def separable(tmp_path_factory):
    return load_manifest(write_blobs(tmp_path_factory.mktemp("separable"), n=250, spread=0.3, seed=1))


def test_flip_labels_changes_exactly_the_chosen_train_labels_and_nothing_else(separable):
    original = separable.y.copy()
    corrupted, flipped = flip_labels(separable, 0.1, seed=4)
    train = separable.train_indices()
    assert len(flipped) == round(0.1 * len(train))
    assert np.isin(flipped, train).all()
    changed = np.flatnonzero(corrupted.y != separable.y)
    assert list(changed) == list(flipped)
    assert np.array_equal(separable.y, original)  # the caller's data set is untouched
    again, flipped_again = flip_labels(separable, 0.1, seed=4)
    assert np.array_equal(again.y, corrupted.y) and np.array_equal(flipped, flipped_again)
    with pytest.raises(BadInput):
        flip_labels(separable, 1.5, seed=0)
    with pytest.raises(BadInput):
        flip_labels(separable, 0.001, seed=0)


def test_rankers_agree_that_flipped_records_come_first_on_a_separable_set(separable):
    rankers = [name for name, about in RANKERS.items() if not about.costly]
    result = evaluate(separable, rankers, flip_rate=0.05, seed=0, epochs=30)
    assert result["model"]["test_accuracy"] == 1.0
    assert result["fractions"] == list(FRACTIONS)
    for name, values in result["rankers"].items():
        # k = the number flipped: the first k records ranked are exactly the flipped ones
        assert values["top_k_precision"] == 1.0, (name, values)
        assert values["found"][1] == 1.0, (name, values)
        assert values["seconds"] >= 0


def test_influence_rankers_refuse_an_ensemble_checkpoint(separable):
    from unlearn_cli.models.checkpoint import Checkpoint

    ensemble = Checkpoint({}, {"kind": "sisa", "arch": {"name": "mlp", "kwargs": {}}}, None, None)
    for name in ("puma", "puma-paper", "grad-dot", "influence", "kfold"):
        with pytest.raises(BadInput, match="self-confidence"):
            rank(name, ensemble, separable)
    with pytest.raises(BadInput, match="unknown ranker"):
        rank("shapley", ensemble, separable)


def test_rankers_are_plugins_listed_in_their_declared_order():
    from unlearn_cli import plugins
    from unlearn_cli.diagnostics.rankers import Ranker

    assert list(RANKERS) == ["loo", "puma", "puma-paper", "self-confidence", "margin", "grad-dot", "influence",
                             "kfold"]
    assert [name for name, cls in RANKERS.items() if cls.costly] == ["kfold"]
    for name, cls in plugins.load_all("rankers").items():
        assert issubclass(cls, Ranker) and cls.name == name and RANKERS[name] is cls


def test_kfold_ranker_trains_its_folds_and_finds_the_flips(separable):
    import dataclasses

    from unlearn_cli.diagnostics.rankers import RankSettings

    settings = dataclasses.replace(RankSettings(), folds=2)
    result = evaluate(separable, ["kfold"], flip_rate=0.05, seed=0, epochs=15, settings=settings)
    assert result["rankers"]["kfold"]["found"][1] == 1.0, result["rankers"]

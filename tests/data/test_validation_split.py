"""``splits.validation`` (DESIGN.md manifest addition, wave 2): held-out rows that never overlap train or test."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_cli.errors import BadInput
from tests.data.test_manifest import N, base_arrays, base_manifest, st_dataset


def _with(splits: dict, **arrays: np.ndarray):
    manifest = base_manifest()
    manifest["splits"] = splits
    return manifest, {**base_arrays(), **arrays}


def test_no_validation_key_gives_an_empty_split(tmp_path):
    ds = st_dataset(tmp_path)
    assert ds.validation_indices().tolist() == []
    assert ds.validation.dtype == np.bool_ and ds.validation.shape == (N,)


def test_mask_validation_is_disjoint_and_the_rest_excludes_it(tmp_path):
    val = np.zeros(N, dtype=bool)
    val[7:9] = True
    manifest, arrays = _with({"test": "test_mask", "validation": "val_mask"},
                             val_mask=val, test_mask=np.arange(N) >= 9)
    ds = st_dataset(tmp_path, manifest, arrays)
    assert ds.validation_indices().tolist() == [7, 8]
    assert ds.train_indices().tolist() == list(range(7))  # train = rest, without validation rows
    assert ds.test_indices().tolist() == [9]


def test_fraction_validation_is_carved_outside_the_given_splits(tmp_path):
    manifest, arrays = _with({"train": "train_mask", "validation": {"fraction": 0.2, "seed": 3}})
    ds = st_dataset(tmp_path, manifest, arrays)
    assert len(ds.validation_indices()) == 2
    assert not (ds.validation & ds.train).any() and not (ds.validation & ds.test).any()
    assert ds.train_indices().tolist() == list(range(7))  # what the model trains on is unchanged
    assert len(ds.test_indices()) == 1


def test_overlap_with_train_is_refused_naming_both_keys(tmp_path):
    manifest, arrays = _with({"train": "train_mask", "test": "test_mask", "validation": "train_mask"})
    with pytest.raises(BadInput, match=r"splits\.validation.*splits\.train.*overlap in 7 row"):
        st_dataset(tmp_path, manifest, arrays)


def test_a_fraction_larger_than_the_free_rows_is_refused(tmp_path):
    manifest, arrays = _with({"train": "train_mask", "test": "test_mask", "validation": {"fraction": 0.5}})
    with pytest.raises(BadInput, match=r"splits\.validation\.fraction.*asks for 5 rows but only 0"):
        st_dataset(tmp_path, manifest, arrays)


def test_subset_train_keeps_the_validation_rows(tmp_path):
    val = np.zeros(N, dtype=bool)
    val[9] = True
    manifest, arrays = _with({"train": "train_mask", "validation": "val_mask"}, val_mask=val)
    ds = st_dataset(tmp_path, manifest, arrays).subset_train(np.arange(3))
    assert ds.validation_indices().tolist() == [9] and ds.train_indices().tolist() == [0, 1, 2]

"""In-process checks of the pieces the method plugins are built from (fast: no subprocesses).

SISA slicing and aggregation, the Amnesiac update log (subtracting every batch
returns the initial weights), SalUn's saliency mask, Boundary Shrink's
neighbour search and Boundary Expanding's widen/prune round trip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import write_blobs
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.errors import BadInput
from unlearn_cli.methods.base import Request
from unlearn_cli.methods.registry import describe, get
from unlearn_cli.models.checkpoint import Checkpoint
from unlearn_cli.models.ensemble import SisaEnsemble
from unlearn_cli.models.registry import make_spec
from unlearn_cli.options import parse_options
from unlearn_cli.training.sisa import assign, epochs_per_slice, slice_positions
from unlearn_cli.training.loop import Recipe, batch_schedule, init_model
from unlearn_cli.training.update_log import batches_holding, subtract, train_tracked
from unlearn_cli.training.fit import fit
from unlearn_cli.data.tensors import tensors

RECIPE = Recipe(optimizer="adam", lr=0.01, epochs=6, batch_size=16, weight_decay=1e-4, seed=4)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    manifest = write_blobs(tmp_path_factory.mktemp("units"), n=160, classes=3, name="units")
    dataset = load_manifest(manifest)
    spec = make_spec("mlp", dataset.input_shape, dataset.num_classes, hidden=[16], activation="relu")
    return dataset, spec


# -- SISA -------------------------------------------------------------------------


@pytest.mark.parametrize("epochs,slices", [(100, 4), (10, 4), (7, 3), (12, 1), (5, 5)])
def test_epochs_per_slice_cost_the_same_as_unsliced_training(epochs, slices):
    per = epochs_per_slice(epochs, slices)
    assert len(per) == slices and all(e >= 0 for e in per)
    assert sum(per) == (2 * epochs * slices) // (slices + 1)  # the reference code's total
    # Slice r trains on (r+1)/R of the shard: the work adds up to ~`epochs` passes over the shard.
    work = sum(e * (r + 1) / slices for r, e in enumerate(per))
    assert abs(work - epochs) <= slices


def test_assignment_partitions_records_into_nearly_equal_shards_and_slices():
    a = assign(103, 4, 3, seed=7)
    assert a.shape == (103, 2)
    shard_sizes = np.bincount(a[:, 0])
    assert len(shard_sizes) == 4 and shard_sizes.max() - shard_sizes.min() <= 1
    for s in range(4):
        sizes = np.bincount(a[a[:, 0] == s, 1], minlength=3)
        assert sizes.max() - sizes.min() <= 1 and sizes.min() >= 1
    assert np.array_equal(a, assign(103, 4, 3, seed=7))
    assert not np.array_equal(a, assign(103, 4, 3, seed=8))


def test_assignment_refuses_more_slices_than_records():
    with pytest.raises(BadInput, match="every slice needs at least one record"):
        assign(10, 4, 3, seed=0)


def test_slice_positions_leave_out_removed_records():
    a = assign(40, 2, 2, seed=0)
    removed = np.flatnonzero(a[:, 0] == 1)[:3]
    pos = slice_positions(a, 1, 2, removed)
    got = np.concatenate(pos)
    assert not np.intersect1d(got, removed).size
    assert len(got) == int((a[:, 0] == 1).sum()) - 3


class Fixed(nn.Module):
    """A constituent that always outputs the given logits."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_vote_aggregate_is_the_majority_label_with_smoothed_shares():
    members = [Fixed([2.0, 0.0, 0.0]), Fixed([0.0, 3.0, 0.0]), Fixed([0.0, 1.0, 0.0])]
    scores = SisaEnsemble(members, "vote", 3)(torch.zeros(4, 2))
    assert scores.argmax(1).tolist() == [1, 1, 1, 1]
    shares = torch.softmax(scores, 1)[0]
    assert torch.allclose(shares, torch.tensor([1.5, 2.5, 0.5]) / 4.5)


def test_vote_ties_go_to_the_lower_class():
    members = [Fixed([0.0, 1.0]), Fixed([1.0, 0.0])]
    assert SisaEnsemble(members, "vote", 2)(torch.zeros(1, 2)).argmax(1).item() == 0


def test_mean_aggregate_averages_softmax():
    members = [Fixed([2.0, 0.0]), Fixed([0.0, 1.0])]
    scores = SisaEnsemble(members, "mean", 2)(torch.zeros(1, 2))
    expected = (torch.softmax(torch.tensor([2.0, 0.0]), 0) + torch.softmax(torch.tensor([0.0, 1.0]), 0)) / 2
    assert torch.allclose(torch.softmax(scores, 1)[0], expected)


# -- Amnesiac update log -------------------------------------------------------------


@pytest.fixture(scope="module")
def tracked(small):
    dataset, spec = small
    model, _, log, meta = train_tracked(dataset, dataset.train_indices(), spec, RECIPE)
    return model, log, meta


def test_tracking_does_not_change_training(small, tracked):
    dataset, spec = small
    plain, _ = fit(dataset, dataset.train_indices(), spec, RECIPE)
    sa, sb = plain.state_dict(), tracked[0].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_subtracting_every_batch_returns_the_initial_weights(small, tracked):
    dataset, spec = small
    model, log, meta = tracked
    steps = log["positions"].shape[0]
    assert meta["steps"] == steps
    back = subtract(model.state_dict(), log, np.ones(steps, dtype=bool))
    init = init_model(spec, RECIPE.seed).state_dict()
    moved = max(float((model.state_dict()[k] - init[k]).abs().max()) for k in init)
    error = max(float((back[k] - init[k]).abs().max()) for k in init)
    assert moved > 0.1
    assert error < 1e-6


def test_logged_batches_replay_the_training_schedule(small, tracked):
    dataset, _ = small
    _, log, _ = tracked
    n = int(dataset.train.sum())
    for (_, step, positions), logged in zip(batch_schedule(n, RECIPE.batch_size, RECIPE.epochs, RECIPE.seed),
                                            log["positions"].numpy()):
        assert np.array_equal(logged[logged >= 0], positions)


def test_each_record_sits_in_one_batch_per_epoch(tracked):
    _, log, _ = tracked
    hit = batches_holding(log, np.array([5]))
    assert hit.sum() == RECIPE.epochs


# -- SalUn and Boundary building blocks -------------------------------------------------


def test_saliency_mask_keeps_the_requested_share_of_largest_gradients(small):
    from unlearn_cli.methods.salun import saliency_mask

    dataset, spec = small
    model, _ = fit(dataset, dataset.train_indices(), spec, RECIPE)
    x, y = tensors(dataset, dataset.train_indices()[:20])
    masks = saliency_mask(model, x, y, 0.3)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == int(total * 0.3)
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    flat = torch.cat([g.abs().flatten() for g in grads])
    inside = torch.cat([g.abs().flatten()[m.flatten()] for g, m in zip(grads, masks.values())])
    outside = torch.cat([g.abs().flatten()[~m.flatten()] for g, m in zip(grads, masks.values())])
    assert inside.min() >= outside.max() - 1e-7 * float(flat.max())


def test_random_wrong_labels_never_equal_the_true_label():
    from unlearn_cli.methods.salun import random_wrong_labels

    y = torch.arange(300) % 4
    wrong = random_wrong_labels(y, 4, seed=1)
    assert not bool((wrong == y).any())
    assert set(wrong.tolist()) == {0, 1, 2, 3}


def test_neighbour_search_is_one_fgsm_step_in_pixel_space():
    from unlearn_cli.methods.boundary import neighbour_labels

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        model[1].bias.zero_()
    # Class 0 by a margin of 0.1: one step of 0.1 on each of two features swaps the logits.
    x = torch.tensor([[[[0.5, 0.45], [0.0, 0.0]]], [[[0.9, 0.1], [0.0, 0.0]]]])
    y = torch.tensor([0, 0])
    assert neighbour_labels(model, x, y, 0.1, "none").tolist() == [1, 0]
    assert neighbour_labels(model, x, y, 0.01, "none").tolist() == [0, 0]


def _request(dataset, spec, state, forget_rows):
    meta = {"kind": "plain", "arch": spec, "training": RECIPE.to_dict()}
    retain = np.setdiff1d(dataset.train_indices(), forget_rows)
    return Request(Checkpoint(state, meta, Path("x.safetensors")), dataset, forget_rows, retain, "cpu", 0)


def test_boundary_expand_keeps_every_tensor_shape(small):
    dataset, spec = small
    model, _ = fit(dataset, dataset.train_indices(), spec, RECIPE)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = dataset.train_indices()[dataset.y[dataset.train_indices()] == 1]
    method = get("boundary-expand")
    out = method.forget(_request(dataset, spec, state, rows), parse_options(method.Config, {"lr": 0.01}, owner="method 'x'"))
    assert {k: tuple(v.shape) for k, v in out.state.items()} == {k: tuple(v.shape) for k, v in state.items()}
    assert out.metrics["shadow_class"] == 3 and out.metrics["whole_classes_removed"] == [1]
    # Only the output layer was widened; the hidden layers were fine-tuned, not replaced.
    assert out.metrics["pruned_tensors"] == ["layers.1.weight", "layers.1.bias"]


def test_every_method_documents_its_options():
    for name in ("retrain", "sisa", "amnesiac", "boundary-shrink", "boundary-expand", "salun", "neggrad",
                 "finetune"):
        info = describe(name)
        assert info["summary"] and len(info["details"]) > 200, name
        for option in info["options"]:
            assert option["doc"], (name, option["name"])


def test_paper_defaults():
    def defaults(name):
        return {o["name"]: o["default"] for o in describe(name)["options"]}

    assert defaults("boundary-shrink") == {"bound": 0.1, "lr": 1e-5, "epochs": 10, "momentum": 0.9, "batch_size": 64}
    assert defaults("boundary-expand") == {"lr": 1e-5, "epochs": 10, "momentum": 0.9, "batch_size": 64}
    assert defaults("salun")["sparsity"] == 0.5 and defaults("salun")["lr"] == 0.013
    assert defaults("finetune")["epochs"] == 5 and defaults("amnesiac")["repair_epochs"] == 0


@pytest.mark.parametrize("name,key,value", [
    ("salun", "sparsity", "0"), ("salun", "sparsity", "1.5"), ("neggrad", "alpha", "2"),
    ("boundary-shrink", "bound", "-1"), ("finetune", "epochs", "0"), ("amnesiac", "repair_epochs", "-1"),
    # non-finite values: refused by the declared range, before the method runs (issue #15)
    ("salun", "weight_decay", "nan"), ("neggrad", "lr", "inf"), ("boundary-shrink", "bound", "nan"),
    ("finetune", "momentum", "nan"), ("amnesiac", "repair_lr", "-inf"), ("boundary-expand", "epochs", "1e9"),
])
def test_bad_options_are_bad_input(name, key, value):
    method = get(name)
    with pytest.raises(BadInput, match=key):
        parse_options(method.Config, {key: value}, owner=f"method '{name}'")

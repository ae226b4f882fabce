"""The one training loop: seeded, replayable, and it actually learns."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.errors import BadInput
from unlearn_cli.models.predict import predict_logits, summarize
from unlearn_cli.models.registry import make_spec
from unlearn_cli.training.loop import (
    Recipe,
    batch_schedule,
    default_recipe,
    init_model,
    resolve_device,
    steps_per_epoch,
    train_model,
    with_seed,
)
from unlearn_cli.data.tensors import tensors

RECIPE = Recipe(optimizer="adam", lr=0.01, epochs=4, batch_size=32, weight_decay=1e-4, seed=0)


@pytest.fixture(scope="module")
def blobs(blobs_manifest):
    dataset = load_manifest(blobs_manifest)
    x, y = tensors(dataset, dataset.train_indices())
    xt, yt = tensors(dataset, dataset.test_indices())
    spec = make_spec("mlp", dataset.input_shape, dataset.num_classes, hidden=[16], activation="relu")
    return spec, x, y, xt, yt


def _train(blobs, recipe=RECIPE, **kwargs):
    spec, x, y, _, _ = blobs
    model = init_model(spec, recipe.seed)
    result = train_model(model, x, y, recipe, **kwargs)
    return model, result


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- determinism -----------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_weights(blobs):
    first, r1 = _train(blobs)
    second, r2 = _train(blobs)
    third, r3 = _train(blobs)
    assert _same_weights(first, second)
    assert _same_weights(first, third)
    assert r1.losses == r2.losses == r3.losses


def test_identical_even_when_global_rng_was_disturbed_in_between(blobs):
    first, _ = _train(blobs)
    torch.manual_seed(12345)
    torch.rand(100)
    np.random.seed(7)
    second, _ = _train(blobs)
    assert _same_weights(first, second)


def test_different_seed_gives_different_weights(blobs):
    a, _ = _train(blobs)
    b, _ = _train(blobs, with_seed(RECIPE, 1))
    assert not _same_weights(a, b)


def test_schedule_seed_changes_only_the_batch_order(blobs):
    spec, x, y, _, _ = blobs
    init_a, init_b = init_model(spec, 0), init_model(spec, 0)
    assert _same_weights(init_a, init_b)
    order_a, order_b = [], []
    train_model(init_a, x, y, RECIPE, on_step=lambda s: order_a.append(s.positions.copy()))
    train_model(init_b, x, y, RECIPE, schedule_seed=99, on_step=lambda s: order_b.append(s.positions.copy()))
    assert not all(np.array_equal(p, q) for p, q in zip(order_a, order_b))
    assert not _same_weights(init_a, init_b)
    expected = [pos for _, _, pos in batch_schedule(len(y), RECIPE.batch_size, RECIPE.epochs, 99)]
    assert all(np.array_equal(p, q) for p, q in zip(order_b, expected))


# -- batch schedule --------------------------------------------------------------


@pytest.mark.parametrize("n,batch_size,epochs", [(23, 5, 3), (32, 8, 2), (7, 100, 2), (1, 1, 3)])
def test_batch_schedule_covers_each_position_once_per_epoch(n, batch_size, epochs):
    batches = list(batch_schedule(n, batch_size, epochs, seed=3))
    assert len(batches) == epochs * steps_per_epoch(n, batch_size)
    assert [step for _, step, _ in batches] == list(range(len(batches)))
    for epoch in range(epochs):
        in_epoch = [pos for e, _, pos in batches if e == epoch]
        assert len(in_epoch) == steps_per_epoch(n, batch_size)
        sizes = [len(p) for p in in_epoch]
        assert sizes[:-1] == [batch_size] * (len(sizes) - 1)
        assert sizes[-1] == n - batch_size * (len(sizes) - 1)
        flat = np.concatenate(in_epoch)
        assert np.array_equal(np.sort(flat), np.arange(n))
    assert [e for e, _, _ in batches] == sorted(e for e, _, _ in batches)


def test_batch_schedule_is_a_pure_function_of_its_arguments():
    def run(seed):
        return [(e, s, p.tolist()) for e, s, p in batch_schedule(50, 8, 3, seed)]

    torch_state = torch.get_rng_state()
    first = run(0)
    torch.manual_seed(999)  # the global generator must not matter
    torch_state2 = torch.get_rng_state()
    second = run(0)
    assert first == second
    assert torch.equal(torch.get_rng_state(), torch_state2), "batch_schedule must not consume the global RNG"
    assert not torch.equal(torch_state, torch_state2)
    assert run(1) != first
    # Epochs are shuffled independently, and a longer run replays a shorter one's prefix.
    epoch0 = [p for e, _, p in first if e == 0]
    epoch1 = [p for e, _, p in first if e == 1]
    assert epoch0 != epoch1
    longer = [(e, s, p.tolist()) for e, s, p in batch_schedule(50, 8, 5, 0)]
    assert longer[: len(first)] == first


def test_batch_schedule_with_zero_epochs_is_empty():
    assert list(batch_schedule(10, 3, 0, 0)) == []


# -- callbacks ---------------------------------------------------------------------


def test_on_step_is_called_once_per_step_with_the_scheduled_batches(blobs):
    _, _, y, _, _ = blobs
    recipe = replace(RECIPE, batch_size=50, epochs=3)
    steps, progress = [], []
    model, result = _train(blobs, recipe, on_step=steps.append,
                           progress=lambda phase, d, t: progress.append((phase, d, t)))
    n = len(y)
    per_epoch = steps_per_epoch(n, 50)
    total = 3 * per_epoch
    assert len(steps) == total == result.steps
    assert [s.step for s in steps] == list(range(total))
    assert Counter(s.epoch for s in steps) == {e: per_epoch for e in range(3)}
    expected = list(batch_schedule(n, 50, 3, recipe.seed))
    for info, (epoch, step, positions) in zip(steps, expected):
        assert (info.epoch, info.step) == (epoch, step)
        assert np.array_equal(info.positions, positions)
        assert info.model is model
        assert np.isfinite(info.loss)
    sizes = [len(s.positions) for s in steps[:per_epoch]]
    assert sizes == [50] * (per_epoch - 1) + [n - 50 * (per_epoch - 1)]
    batches = [(d, t) for phase, d, t in progress if phase == "batch"]
    epochs = [(d, t) for phase, d, t in progress if phase == "epoch"]
    assert batches == [(i, total) for i in range(total + 1)]  # the total from the start
    assert epochs == [(e, 3) for e in range(4)]
    # Per-epoch mean loss is the size-weighted mean of the step losses.
    for epoch in range(3):
        mine = [s for s in steps if s.epoch == epoch]
        weighted = sum(s.loss * len(s.positions) for s in mine) / sum(len(s.positions) for s in mine)
        assert result.losses[epoch] == pytest.approx(weighted, rel=1e-12)


def test_after_step_and_custom_loss_are_used(blobs):
    calls = []
    seen_positions = []

    def loss_fn(logits, targets, positions):
        seen_positions.append(positions)
        return torch.nn.functional.cross_entropy(logits, targets) * 0.0 + logits.sum() * 0.0

    model_before = init_model(blobs[0], 0)
    model, result = _train(blobs, replace(RECIPE, epochs=1, weight_decay=0.0),
                           loss_fn=loss_fn, after_step=lambda: calls.append(1))
    assert len(calls) == result.steps == len(seen_positions)
    # A zero loss with no weight decay leaves Adam's weights where they started.
    assert _same_weights(model, model_before)


# -- learning ----------------------------------------------------------------------


def test_training_reduces_loss_and_learns_blobs(blobs):
    spec, x, y, xt, yt = blobs
    model = init_model(spec, 0)
    before = summarize(predict_logits(model, xt), yt)
    result = train_model(model, x, y, replace(RECIPE, epochs=10))
    after = summarize(predict_logits(model, xt), yt)
    assert len(result.losses) == 10
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert after["loss"] < before["loss"]
    assert after["accuracy"] >= 0.9
    assert not model.training, "train_model leaves the model in eval mode"


def test_sgd_recipe_also_learns(blobs):
    _, result = _train(blobs, replace(RECIPE, optimizer="sgd", lr=0.1, epochs=5))
    assert result.losses[-1] < result.losses[0]


def test_zero_epochs_leaves_initial_weights(blobs):
    spec = blobs[0]
    model, result = _train(blobs, replace(RECIPE, epochs=0))
    assert result.losses == [] and result.steps == 0
    assert _same_weights(model, init_model(spec, RECIPE.seed))


def test_empty_training_set_is_bad_input(blobs):
    spec = blobs[0]
    with pytest.raises(BadInput, match="empty"):
        train_model(init_model(spec, 0), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), RECIPE)


# -- recipes -----------------------------------------------------------------------


@pytest.mark.parametrize("field,value,flag", [
    ("optimizer", "rmsprop", "--optimizer"),
    ("lr", 0.0, "--lr"),
    ("lr", -1.0, "--lr"),
    ("lr", float("nan"), "--lr"),
    ("epochs", -1, "--epochs"),
    ("batch_size", 0, "--batch-size"),
    ("weight_decay", -1e-3, "--weight-decay"),
])
def test_recipe_validate_rejects_bad_values(field, value, flag):
    with pytest.raises(BadInput) as info:
        replace(Recipe(), **{field: value}).validate()
    assert flag in str(info.value)
    assert "\n" not in str(info.value)


def test_recipe_validate_returns_itself_and_train_model_validates():
    recipe = Recipe()
    assert recipe.validate() is recipe
    with pytest.raises(BadInput, match="--batch-size"):
        train_model(torch.nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long),
                    replace(recipe, batch_size=0))


def test_recipe_round_trips_through_a_dict():
    recipe = Recipe(optimizer="sgd", lr=0.5, epochs=3, batch_size=7, weight_decay=0.0, momentum=0.5, seed=9)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert Recipe.from_dict({**recipe.to_dict(), "unknown_future_key": 1}) == recipe
    assert set(recipe.to_dict()) >= {"optimizer", "lr", "epochs", "batch_size", "seed", "weight_decay"}


def test_default_recipe_overrides_and_ignores_none():
    assert default_recipe("cnn") == Recipe(optimizer="adam", lr=2e-3, epochs=10, batch_size=64, weight_decay=1e-4)
    r = default_recipe("mlp", epochs=5, lr=None, seed=4)
    assert (r.epochs, r.lr, r.seed) == (5, 0.01, 4)
    with pytest.raises(BadInput, match="--epochs"):
        default_recipe("mlp", epochs=-2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(BadInput, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BadInput, match="CUDA"):
            resolve_device("cuda")

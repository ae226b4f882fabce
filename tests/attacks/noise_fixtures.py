"""A data set an MLP can only memorise, and two models of it, for the attack tests.

Labels are drawn at random (ten classes), so nothing generalises: a model
trained on the train split is a textbook over-fitted target (train loss ~0,
test loss high), and a model trained on the third, unused block of rows has
never seen a "member" and must look the same on train and test records.

Test modules import the fixture by name: a conftest.py in this folder would
shadow the top-level one that other tests import as ``conftest``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

N_BLOCK = 300  # rows per block: train, test, unused
FEATURES = 8
# Random labels over ten classes: a confident guess on an unseen record is right 1 time in 10,
# so (unlike two classes, where half the guesses look memorised) the loss tells members apart.
CLASSES = 10
# Small enough to run in about a second, long enough to memorise 300 random labels.
RECIPE = dict(optimizer="adam", lr=0.01, epochs=50, batch_size=32, weight_decay=0.0, seed=0)


def write_noise_data(directory: Path) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    n = 3 * N_BLOCK
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=n).astype(np.int64)
    train = np.zeros(n, bool)
    test = np.zeros(n, bool)
    train[:N_BLOCK] = True
    test[N_BLOCK : 2 * N_BLOCK] = True
    directory.mkdir(parents=True, exist_ok=True)
    save_file({"x": x, "y": y, "id": np.arange(n, dtype=np.int64), "train_mask": train, "test_mask": test},
              str(directory / "noise.safetensors"))
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        f"name: noise\nnum_classes: {CLASSES}\n"
        "data:\n  path: noise.safetensors\n  features: x\n  labels: y\n  ids: id\n"
        "splits:\n  train: train_mask\n  test: test_mask\nnormalize: none\n"
    )
    return manifest


def train_checkpoint(dataset, rows: np.ndarray, out: Path) -> Path:
    """Fit an MLP on ``rows`` but record the data set's train split as its training set."""
    from unlearn_cli.models.checkpoint import save_checkpoint
    from unlearn_cli.training.loop import Recipe
    from unlearn_cli.models.registry import arch_spec_for
    from unlearn_cli.training.fit import base_meta, fit

    spec = arch_spec_for(dataset, "mlp", [64, 32], "relu")
    recipe = Recipe(**RECIPE)
    model, _ = fit(dataset, rows, spec, recipe)
    save_checkpoint(out, model.state_dict(), base_meta(spec, recipe, dataset, out))
    return out


@pytest.fixture(scope="session")
def noise(tmp_path_factory):
    """(dataset, over-fitted checkpoint, never-trained-on-members checkpoint, shared cache dir)."""
    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.models.checkpoint import load_checkpoint

    root = tmp_path_factory.mktemp("noise")
    dataset = load_manifest(write_noise_data(root))
    overfit = train_checkpoint(dataset, dataset.train_indices(), root / "overfit.safetensors")
    unused = np.arange(2 * N_BLOCK, 3 * N_BLOCK)
    untrained = train_checkpoint(dataset, unused, root / "untrained.safetensors")
    return dataset, load_checkpoint(overfit), load_checkpoint(untrained), root / "cache"

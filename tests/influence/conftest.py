"""Small trained models for the influence tests (trained once per session)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.models.registry import make_spec
from unlearn_cli.training import Recipe
from unlearn_cli.workflow import fit


class Trained:
    def __init__(self, manifest, arch: str, epochs: int, **kwargs):
        self.dataset = load_manifest(manifest)
        self.spec = make_spec(arch, self.dataset.input_shape, self.dataset.num_classes, **kwargs)
        self.recipe = Recipe(epochs=epochs, lr=0.01, batch_size=32, weight_decay=1e-3, seed=0)
        self.model, _ = fit(self.dataset, self.dataset.train_indices(), self.spec, self.recipe)
        rows = self.dataset.train_indices()
        self.x = torch.from_numpy(self.dataset.x[rows])
        self.y = torch.from_numpy(self.dataset.y[rows])


@pytest.fixture(scope="session")
def small_mlp(blobs_manifest):
    return Trained(blobs_manifest, "mlp", epochs=15, hidden=[8, 6])


@pytest.fixture(scope="session")
def small_cnn(images_manifest):
    return Trained(images_manifest, "cnn", epochs=2, channels=[2, 3], hidden=5)


@pytest.fixture(scope="session")
def small_densenet(images_manifest):
    return Trained(images_manifest, "densenet", epochs=1, nblocks=[1, 1], growth_rate=2)

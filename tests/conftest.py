"""Shared fixtures: small data sets written as real manifests, and trained checkpoints.

Session-scoped so the suite trains each small model once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.models.registry import make_spec
from unlearn_cli.training.loop import Recipe
from unlearn_cli.training.fit import fit

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_models"


def write_blobs(directory: Path, n: int = 300, seed: int = 0, name: str = "blobs", classes: int = 2,
                test_fraction: float = 0.2, spread: float = 0.6) -> Path:
    """Gaussian blobs (one per class, two features) as a .safetensors data set + manifest."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = np.stack([np.cos(2 * np.pi * np.arange(classes) / classes),
                        np.sin(2 * np.pi * np.arange(classes) / classes)], 1) * 2.0
    x = centers[y] + rng.normal(0, spread, (n, 2))
    directory.mkdir(parents=True, exist_ok=True)
    save_file({"x": x.astype(np.float32), "y": y.astype(np.int64), "id": np.arange(n, dtype=np.int64)},
              str(directory / f"{name}.safetensors"))
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        f"name: {name}\nnum_classes: {classes}\n"
        f"data:\n  path: {name}.safetensors\n  features: x\n  labels: y\n  ids: id\n"
        f"splits:\n  test: {{fraction: {test_fraction}, seed: 0}}\nnormalize: standard\n"
    )
    return manifest


def write_images(directory: Path, n: int = 200, seed: int = 0, classes: int = 3) -> Path:
    """Tiny 1x28x28 'images': a bright square whose position encodes the class."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 40, (n, 1, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        r = 4 + 7 * label
        x[i, 0, r : r + 6, 8:20] = 220
    directory.mkdir(parents=True, exist_ok=True)
    save_file({"x": x.reshape(n, -1), "y": y.astype(np.int64), "id": np.arange(n, dtype=np.int64)},
              str(directory / "img.safetensors"))
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        f"name: img\nnum_classes: {classes}\n"
        "data:\n  path: img.safetensors\n  features: x\n  labels: y\n  ids: id\n"
        "splits:\n  test: {fraction: 0.25, seed: 0}\ninput_shape: [1, 28, 28]\nnormalize: scale255\n"
    )
    return manifest


def unlearn_cmd() -> list[str]:
    """The installed console script (tests drive the real command)."""
    exe = shutil.which("unlearn", path=str(Path(sys.executable).parent)) or shutil.which("unlearn")
    if exe is None:
        pytest.fail("the 'unlearn' console script is not installed; run make test")
    return [exe]


def run_cli(*args: str, check: bool = False, input: bytes | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run(unlearn_cmd() + [str(a) for a in args], capture_output=True, input=input,
                          cwd=cwd, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"unlearn {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


def run_here(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
             input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``unlearn ARGS`` in this process (typer's test runner on the real app).

    The same command code without a fresh interpreter: it saves the ~2 s of
    importing torch that each ``run_cli`` pays, so fixtures use it for quick
    cases (bad input, exit 2) and keep ``run_cli`` for the real console script.
    Returns a ``CompletedProcess`` with bytes stdout/stderr, like ``run_cli``.
    Not thread-safe (the runner swaps ``sys.stdout``): call it from one thread.
    """
    from typer.testing import CliRunner

    from unlearn_cli.cli.app import app

    argv = [str(a) for a in args]
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner(env={"COLUMNS": "200", **(env or {})}).invoke(app, argv, input=input)
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(["unlearn", *argv], result.exit_code,
                                       result.stdout_bytes, result.stderr_bytes)


@pytest.fixture(scope="session")
def blobs_manifest(tmp_path_factory) -> Path:
    return write_blobs(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="session")
def blobs_checkpoint(blobs_manifest: Path, tmp_path_factory) -> Path:
    """An MLP trained through the library (fast; CLI tests train their own)."""
    out = blobs_manifest.parent / "model.safetensors"
    run_cli("train", blobs_manifest, "--out", out, "--epochs", "30", "--quiet", check=True)
    return out


@pytest.fixture(scope="session")
def images_manifest(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


# -- small trained models for the influence tests (trained once per session) --



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

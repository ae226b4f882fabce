"""Tests for the deterministic 2-D toy generators in unlearn_cli.data.synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_cli.data.synthetic import (
    GENERATORS,
    RADIAL_CLUSTERS,
    RECTANGULAR_GRID,
    make_moons,
    make_radial,
    make_rectangular,
    make_spiral,
    radial_centers,
    rectangular_cells,
)

# Documented default sizes and class counts per generator.
DEFAULTS = {"moons": (500, 2), "radial": (600, 2), "rectangular": (800, 3), "spiral": (600, 2)}


def test_registry_names() -> None:
    assert set(GENERATORS) == set(DEFAULTS)
    assert GENERATORS["moons"] is make_moons
    assert GENERATORS["radial"] is make_radial
    assert GENERATORS["rectangular"] is make_rectangular
    assert GENERATORS["spiral"] is make_spiral


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_default_shapes_and_dtypes(name: str) -> None:
    n, k = DEFAULTS[name]
    x, y = GENERATORS[name](seed=0)
    assert x.shape == (n, 2) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.flags.c_contiguous and y.flags.c_contiguous
    assert np.isfinite(x).all()
    assert set(np.unique(y).tolist()) == set(range(k))


@pytest.mark.parametrize("name", sorted(DEFAULTS))
@pytest.mark.parametrize("n", [1, 7, 101])
def test_n_respected(name: str, n: int) -> None:
    x, y = GENERATORS[name](n=n, seed=3)
    assert x.shape == (n, 2) and y.shape == (n,)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_bad_n_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        GENERATORS[name](n=0, seed=0)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_deterministic_for_a_seed(name: str) -> None:
    x1, y1 = GENERATORS[name](n=200, seed=11)
    x2, y2 = GENERATORS[name](n=200, seed=11)
    # Byte equality, not closeness: build.py ships sha256s of these arrays.
    assert x1.tobytes() == x2.tobytes()
    assert y1.tobytes() == y2.tobytes()


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_different_seeds_differ(name: str) -> None:
    x1, _ = GENERATORS[name](n=200, seed=0)
    x2, _ = GENERATORS[name](n=200, seed=1)
    assert not np.array_equal(x1, x2)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_rows_are_shuffled(name: str) -> None:
    # Ids default to row index; a class-sorted file would let "first k ids" mean
    # "one class". The first half must therefore contain more than one class.
    _, y = GENERATORS[name](seed=0)
    assert len(np.unique(y[: len(y) // 2])) > 1


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_noise_changes_spread(name: str) -> None:
    x_lo, _ = GENERATORS[name](n=300, seed=0, noise=0.0)
    x_hi, _ = GENERATORS[name](n=300, seed=0, noise=1.0)
    assert not np.array_equal(x_lo, x_hi)


@pytest.mark.parametrize("name", ["moons", "spiral"])
def test_two_arm_sets_balanced(name: str) -> None:
    _, y = GENERATORS[name](n=501, seed=0)
    assert np.bincount(y).tolist() == [251, 250]


def test_moons_noise_free_on_the_arcs() -> None:
    x, y = make_moons(n=100, seed=0, noise=0.0)
    upper = x[y == 0].astype(np.float64)
    lower = x[y == 1].astype(np.float64)
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert (upper[:, 1] >= -1e-6).all() and (lower[:, 1] <= 0.5 + 1e-6).all()


def _nearest(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    d = ((x[:, None, :].astype(np.float64) - centers[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def test_radial_structure() -> None:
    centers, classes = radial_centers()
    assert centers.shape == (RADIAL_CLUSTERS, 2) == (6, 2)
    # Two classes, three clusters each, neighbours on the ring alternate.
    assert np.bincount(classes).tolist() == [3, 3]
    assert all(classes[k] != classes[(k + 1) % 6] for k in range(6))
    np.testing.assert_allclose(np.hypot(centers[:, 0], centers[:, 1]), 1.0)

    # With tiny noise every point sits on its own cluster: 100 per cluster and
    # the label is the cluster's class.
    x, y = make_radial(seed=0, noise=0.01)
    cluster = _nearest(x, centers)
    assert np.bincount(cluster, minlength=6).tolist() == [100] * 6
    np.testing.assert_array_equal(y, classes[cluster])
    assert np.bincount(y).tolist() == [300, 300]


def test_radial_default_overlaps_a_little() -> None:
    # Default noise: mostly separable (paper: ~95% MLP accuracy), not trivially.
    x, y = make_radial(seed=0)
    centers, classes = radial_centers()
    agree = (classes[_nearest(x, centers)] == y).mean()
    assert 0.85 < agree < 0.995


def test_rectangular_structure() -> None:
    centers, classes = rectangular_cells()
    g = RECTANGULAR_GRID
    assert centers.shape == (g * g, 2) == (16, 2)
    counts = np.bincount(classes)
    assert len(counts) == 3 and counts.min() >= 4 and counts.sum() == 16
    grid = classes.reshape(g, g)
    # Edge-sharing cells always belong to different classes.
    assert (grid[:, 1:] != grid[:, :-1]).all()
    assert (grid[1:, :] != grid[:-1, :]).all()

    # Noise 0: each point lies inside its own unit cell, 50 per cell.
    x, y = make_rectangular(seed=0, noise=0.0)
    cells = _nearest(x, centers)
    offset = np.abs(x.astype(np.float64) - centers[cells])
    assert (offset <= 0.5 + 1e-6).all()
    assert np.bincount(cells, minlength=16).tolist() == [50] * 16
    np.testing.assert_array_equal(y, classes[cells])
    assert np.bincount(y).tolist() == (counts * 50).tolist()


def test_rectangular_default_overlaps_heavily() -> None:
    # The paper's MLP only reaches ~62-65%; a good share of points must have
    # drifted into a cell of another class.
    x, y = make_rectangular(seed=0)
    centers, classes = rectangular_cells()
    agree = (classes[_nearest(x, centers)] == y).mean()
    assert 0.5 < agree < 0.85


def test_spiral_arms() -> None:
    # Noise 0: arm 1 is arm 0 rotated by pi, radii within [0.1, 1].
    x, y = make_spiral(n=400, seed=0, noise=0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    assert (r >= 0.1 - 1e-6).all() and (r <= 1.0 + 1e-6).all()
    assert np.bincount(y).tolist() == [200, 200]
    # Reconstruct each point's expected angle from its radius and compare.
    theta = 2 * np.pi * 1.75 * (r.astype(np.float64) - 0.1) / 0.9 + np.pi * y
    np.testing.assert_allclose(np.cos(theta) * r, x[:, 0], atol=1e-4)
    np.testing.assert_allclose(np.sin(theta) * r, x[:, 1], atol=1e-4)

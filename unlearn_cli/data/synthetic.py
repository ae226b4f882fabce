"""Deterministic 2-D toy data sets used by the PUMA paper's proof-of-concept runs.

Every generator has the signature ``make_<name>(n, seed, noise) -> (x, y)`` with
``x`` float32 of shape ``(n, 2)`` and ``y`` int64 of shape ``(n,)``. They are
pure functions of their arguments: all randomness comes from one
``np.random.default_rng(seed)`` created inside the call, so the same arguments
always give the same bytes (``sample_models/build.py`` relies on that to ship
data files whose sha256 is reproducible).

Rows are shuffled before returning so that row order (and therefore record ids,
which default to the row index) carries no class or cluster information; an
``ordered`` marking strategy or a split by id range would otherwise pick whole
classes.

The structure of the two cluster data sets is exposed through
:func:`radial_centers` and :func:`rectangular_cells` so callers (tests, the
``cluster`` marking strategy, plots) can tell which cluster a point came from
without the generators returning anything beyond ``(x, y)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = [
    "GENERATORS",
    "RADIAL_CLUSTERS",
    "RECTANGULAR_GRID",
    "make_moons",
    "make_radial",
    "make_rectangular",
    "make_spiral",
    "radial_centers",
    "rectangular_cells",
]

Generator = Callable[..., tuple[np.ndarray, np.ndarray]]

# Radial: 6 clusters on a ring of radius 1, classes alternate around the ring
# so each of the 2 classes owns 3 non-adjacent clusters.
RADIAL_CLUSTERS = 6
_RADIAL_RADIUS = 1.0

# Rectangular: a 4x4 grid of unit cells centred on the origin, 3 classes.
# The class of each cell (row 0 at the bottom). Hand-made rather than a
# formula such as (i + 2j) % 3, which would give diagonal stripes that a
# network learns as three straight bands instead of sixteen blobs. No two
# edge-sharing cells share a class; class 1 owns 6 cells, classes 0 and 2
# own 5 each.
RECTANGULAR_GRID = 4
_RECTANGULAR_LAYOUT: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 1),
    (2, 0, 1, 0),
    (1, 2, 0, 2),
    (0, 1, 2, 1),
)


def _check_n(n: int) -> int:
    """Reject sizes that would silently produce empty or malformed arrays."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    return n


def _split_evenly(n: int, parts: int) -> np.ndarray:
    """Sizes of ``parts`` groups summing to ``n``; the first groups get the remainder."""
    sizes = np.full(parts, n // parts, dtype=np.int64)
    sizes[: n % parts] += 1
    return sizes


def _finish(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle rows (see module docstring) and fix the public dtypes."""
    order = rng.permutation(len(y))
    return (
        np.ascontiguousarray(x[order], dtype=np.float32),
        np.ascontiguousarray(y[order], dtype=np.int64),
    )


def make_moons(n: int = 500, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles.

    Class 0 lies on the upper unit half circle centred at (0, 0); class 1 on the
    lower unit half circle centred at (1, 0.5), which hooks into the first one.
    Points are evenly spaced in angle along each arc, then isotropic gaussian
    noise with standard deviation ``noise`` is added. Class 0 gets the extra
    point when ``n`` is odd.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    n0, n1 = _split_evenly(n, 2)
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0.0, noise, size=(n, 2))
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n0, n1])
    return _finish(rng, x, y)


def radial_centers() -> tuple[np.ndarray, np.ndarray]:
    """Centres (6, 2) and class labels (6,) of the radial data set's clusters.

    Cluster ``k`` sits at angle ``2*pi*k/6`` on the unit circle and has class
    ``k % 2``, so neighbouring clusters always belong to different classes.
    """
    angles = 2.0 * np.pi * np.arange(RADIAL_CLUSTERS) / RADIAL_CLUSTERS
    centers = _RADIAL_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centers, np.arange(RADIAL_CLUSTERS, dtype=np.int64) % 2


def make_radial(n: int = 600, seed: int = 0, noise: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Six gaussian clusters on a ring, two classes alternating around it.

    ``noise`` is each cluster's standard deviation; the clusters sit on a ring
    of radius 1, so neighbouring centres are 1 apart. The default 0.25 puts a
    centre two standard deviations from the nearest wedge boundary between
    classes: a small MLP reaches roughly 95% test accuracy, close to what the
    PUMA paper reports, and the clusters still overlap a little. Cluster sizes
    differ by at most one point.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    centers, classes = radial_centers()
    sizes = _split_evenly(n, RADIAL_CLUSTERS)
    x = np.repeat(centers, sizes, axis=0) + rng.normal(0.0, noise, size=(n, 2))
    y = np.repeat(classes, sizes)
    return _finish(rng, x, y)


def rectangular_cells() -> tuple[np.ndarray, np.ndarray]:
    """Centres (16, 2) and class labels (16,) of the rectangular grid's cells.

    Cell (row ``i``, column ``j``) covers ``[j-2, j-1] x [i-2, i-1]`` and has
    class ``_RECTANGULAR_LAYOUT[i][j]``. Every pair of edge-sharing cells
    differs and each class owns 5 or 6 of the 16 cells. Cells are listed row
    by row.
    """
    g = RECTANGULAR_GRID
    rows, cols = np.divmod(np.arange(g * g), g)
    centers = np.stack([cols - g / 2 + 0.5, rows - g / 2 + 0.5], axis=1).astype(np.float64)
    classes = np.asarray(_RECTANGULAR_LAYOUT, dtype=np.int64).reshape(-1)
    return centers, classes


def make_rectangular(
    n: int = 800, seed: int = 0, noise: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Sixteen rectangular blobs on a 4x4 grid, three classes.

    Each point is drawn uniformly inside its unit cell, then gaussian noise of
    standard deviation ``noise`` (in cell widths) smears it into the
    neighbouring cells. The default 0.25 makes the cells overlap heavily, so a
    64-32 MLP lands around 65-70% test accuracy, near the 62-65% the PUMA
    paper reports for its rectangular set (0.3 gives about 63%, but with less
    margin above 60% from seed to seed). Cell sizes differ by at most one
    point.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    centers, classes = rectangular_cells()
    sizes = _split_evenly(n, len(classes))
    inside = rng.uniform(-0.5, 0.5, size=(n, 2))
    x = np.repeat(centers, sizes, axis=0) + inside + rng.normal(0.0, noise, size=(n, 2))
    y = np.repeat(classes, sizes)
    return _finish(rng, x, y)


def make_spiral(n: int = 600, seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved arms of an Archimedean spiral, one per class.

    Radius runs from 0.1 to 1 over 1.75 turns; arm 1 is arm 0 rotated by pi,
    so the two arms are about 0.26 apart radially. Radii are drawn as
    ``sqrt(uniform)`` because arc length grows with r**2: that spreads points
    evenly along each arm instead of crowding the centre. ``noise`` is the
    standard deviation of isotropic gaussian noise. Class 0 gets the extra
    point when ``n`` is odd.
    """
    n = _check_n(n)
    rng = np.random.default_rng(seed)
    n0, n1 = _split_evenly(n, 2)
    r_min, turns = 0.1, 1.75
    r = np.sqrt(rng.uniform(r_min**2, 1.0, size=n))
    y = np.repeat(np.array([0, 1], dtype=np.int64), [n0, n1])
    # Angle grows linearly with radius (Archimedean); the class picks the arm.
    theta = 2.0 * np.pi * turns * (r - r_min) / (1.0 - r_min) + np.pi * y
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    x = x + rng.normal(0.0, noise, size=(n, 2))
    return _finish(rng, x, y)


GENERATORS: dict[str, Generator] = {
    "moons": make_moons,
    "radial": make_radial,
    "rectangular": make_rectangular,
    "spiral": make_spiral,
}

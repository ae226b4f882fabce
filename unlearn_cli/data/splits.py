"""Train, test and validation masks from a manifest's ``splits`` entry.

Only ``test`` given -> train is the rest; only ``train`` given -> test is the
rest; both given -> they must not overlap and rows in neither are unused.
``{fraction, seed}`` picks ``round(fraction * N)`` rows from the front of
``np.random.default_rng(seed).permutation(N)``. When *both* splits are
fractions they are carved as consecutive blocks of one permutation (test
first, then train) so that they never overlap; they must then share the seed.
No splits at all: every row is train.

``validation`` (optional, same forms) holds held-out records for fitting a
criterion or a temperature. It never overlaps train or test: a mask must be
disjoint from both, and "the rest" of a split given alone excludes it. A
fraction is carved (seeded permutation) from the rows outside the splits
given explicitly, before "the rest" is taken.
"""

from __future__ import annotations

import numpy as np

from unlearn_cli.data.schema import ManifestContext, SplitSpec


def make_splits(ctx: ManifestContext, n: int, specs: dict[str, SplitSpec], masks: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, test, validation) bool masks of length ``n``; the train split must be non-empty."""
    tr, te, va = specs.get("train"), specs.get("test"), specs.get("validation")
    if isinstance(tr, tuple) and isinstance(te, tuple):
        train, test = _two_fractions(ctx, n, tr, te)
    else:
        train = None if tr is None else _split_mask(n, tr, masks, "train")
        test = None if te is None else _split_mask(n, te, masks, "test")
    if train is not None and test is not None:
        _disjoint(ctx, "train", train, "test", test)
    given = np.zeros(n, dtype=bool)
    for mask in (train, test):
        if mask is not None:
            given |= mask
    if va is None:
        validation = np.zeros(n, dtype=bool)
    elif isinstance(va, tuple):
        validation = _carve(ctx, n, va, ~given)
    else:
        validation = _split_mask(n, va, masks, "validation")
    for name, mask in (("train", train), ("test", test)):
        if mask is not None:
            _disjoint(ctx, "validation", validation, name, mask)
    if train is None:  # "the rest": every row that is not test or validation
        train = ~given & ~validation if test is not None else ~validation
    if test is None:
        test = ~train & ~validation if tr is not None else np.zeros(n, dtype=bool)
    if not train.any():
        ctx.fail("splits.train", "selects no rows: the train split must be non-empty")
    return train, test, validation


def _disjoint(ctx: ManifestContext, a: str, mask_a: np.ndarray, b: str, mask_b: np.ndarray) -> None:
    both = np.flatnonzero(mask_a & mask_b)
    if both.size:
        ctx.fail(f"splits.{a}", f"and key 'splits.{b}' overlap in {both.size} row(s), "
                                f"first at row {int(both[0])}")


def _carve(ctx: ManifestContext, n: int, spec: tuple[float, int, bool], free: np.ndarray) -> np.ndarray:
    """``round(fraction * n)`` of the ``free`` rows (outside any split given), by a seeded permutation."""
    fraction, seed, _ = spec
    rows = np.flatnonzero(free)
    k = int(round(fraction * n))
    if k > len(rows):
        ctx.fail("splits.validation.fraction", f"asks for {k} rows but only {len(rows)} lie outside "
                                               "the other splits")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(rows)[:k]] = True
    return mask


def _two_fractions(ctx: ManifestContext, n: int, tr: tuple[float, int, bool], te: tuple[float, int, bool]
                   ) -> tuple[np.ndarray, np.ndarray]:
    # Two independent draws would almost surely overlap, so both fractions
    # share one permutation and take consecutive blocks.
    (ftr, str_, gtr), (fte, ste, gte) = tr, te
    if gtr and gte and str_ != ste:
        ctx.fail("splits.train.seed", f"must equal splits.test.seed ({ste}) when both "
                                      f"splits are fractions, got {str_}")
    seed = ste if gte else str_
    k_te, k_tr = int(round(fte * n)), int(round(ftr * n))
    if k_te + k_tr > n:
        ctx.fail("splits.train.fraction", f"plus splits.test.fraction exceeds 1 "
                                          f"({ftr} + {fte})")
    perm = np.random.default_rng(seed).permutation(n)
    train, test = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    test[perm[:k_te]] = True
    train[perm[k_te:k_te + k_tr]] = True
    return train, test


def _split_mask(n: int, spec: SplitSpec, masks: dict[str, np.ndarray], which: str) -> np.ndarray:
    if isinstance(spec, str):
        return masks[which].copy()
    fraction, seed, _ = spec
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:int(round(fraction * n))]] = True
    return mask

"""Choosing which training records to mark for removal (``unlearn mark``).

Four strategies, each a pure function of the data set, its parameters and a
seed (the same inputs always mark the same records):

``cluster``
    The PUMA paper's appendix-A marking (Listing 3): for a class, run k-means
    with ``clusters`` centres (8 in the paper) on the features of that class's
    train records and mark every record of one cluster (the paper takes the
    smallest). Without ``label`` it does this for every class and marks one
    cluster per class (appendix A steps 1-3); with ``label`` only that class.
    k-means is ``scipy.cluster.vq.kmeans2(minit="++")`` seeded per class with
    ``np.random.default_rng([seed, label])``, so a class's cluster is the same
    whether it is marked alone or together with the other classes.
    Removing a whole cluster is what makes removal measurable: a lone record
    among similar ones is predicted confidently whether or not it was trained on.
``random``
    ``count`` (or ``round(fraction * n)``) train records drawn without replacement
    (from one class with ``label``): the paper's Random scenario.
``class``
    Every train record of class ``label``.
``ordered``
    The paper's Ordered scenario: records that sit in as few recorded training
    batches (plain checkpoints, the Amnesiac update log) or SISA shards/slices
    as the checkpoint allows; see ``marking/ordered.py``.

Only train-split records are ever marked. This module imports neither torch
nor the checkpoint loader at import time: ``mark`` stays a fast command.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from unlearn_cli.data.dataset import Dataset
from unlearn_cli.errors import BadInput
from unlearn_cli.marking.ordered import mark_ordered
from unlearn_cli.marking.result import Marking, amount_params, check_label, count_for, marked, train_rows_of
from unlearn_cli.ops.digests import LedgerKey

STRATEGIES = ("cluster", "random", "class", "ordered")
PICKS = ("smallest", "largest", "median")

#: k-means centres per class: the paper's Listing 3 uses KMeans(n_clusters=8).
DEFAULT_CLUSTERS = 8
#: Which cluster to mark: the paper's Listing 3 takes the smallest one.
DEFAULT_PICK = "smallest"
#: Lloyd iterations for kmeans2 (it runs exactly this many; scikit-learn's
#: KMeans, which the paper used, stops on convergence, which these small data
#: sets reach well within 50).
KMEANS_ITERATIONS = 50
#: k-means++ restarts, keeping the lowest within-cluster sum of squares: the
#: n_init=10 of the scikit-learn KMeans the paper's listing calls. One start
#: alone often isolates a single outlier as "the smallest cluster".
KMEANS_RESTARTS = 10


# --------------------------------------------------------------------------- cluster


def parse_pick(pick: str | int) -> str | int:
    """``smallest``/``largest``/``median`` or an integer rank (0 = smallest cluster)."""
    if isinstance(pick, int) and not isinstance(pick, bool):
        value: str | int = pick
    else:
        text = str(pick).strip().lower()
        if text in PICKS:
            return text
        try:
            value = int(text)
        except ValueError:
            raise BadInput(
                f"--pick must be smallest, largest, median or a rank 0..clusters-1 "
                f"(0 = smallest), got '{pick}'"
            ) from None
    if value < 0:
        raise BadInput(f"--pick rank must be >= 0, got {value}")
    return value


def kmeans_labels(features: np.ndarray, clusters: int, seed: Any) -> np.ndarray:
    """Cluster index per row: scipy's kmeans2 from k-means++ starts, best of
    ``KMEANS_RESTARTS`` by inertia, all drawn from one seeded generator."""
    from scipy.cluster.vq import kmeans2

    data = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(KMEANS_RESTARTS):
        with warnings.catch_warnings():
            # An empty cluster only narrows the choice of clusters; not an error here.
            warnings.simplefilter("ignore")
            centres, labels = kmeans2(data, clusters, iter=KMEANS_ITERATIONS, minit="++", seed=rng)
        inertia = float(((data - centres[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    assert best is not None
    return best.astype(np.int64)


def _choose_cluster(sizes: np.ndarray, pick: str | int) -> int:
    """The cluster id to mark among non-empty clusters, ranked by size (ties: lower id)."""
    ids = np.flatnonzero(sizes > 0)
    ranked = ids[np.argsort(sizes[ids], kind="stable")]
    if pick == "smallest":
        return int(ranked[0])
    if pick == "largest":
        return int(ranked[-1])
    if pick == "median":
        return int(ranked[(len(ranked) - 1) // 2])
    assert isinstance(pick, int)
    if pick >= len(ranked):
        raise BadInput(f"--pick {pick} is out of range: only {len(ranked)} non-empty clusters")
    return int(ranked[pick])


def mark_cluster(dataset: Dataset, *, label: int | None = None, clusters: int = DEFAULT_CLUSTERS,
                 pick: str | int = DEFAULT_PICK, seed: int = 0) -> Marking:
    """One k-means cluster per class (or of class ``label``): PUMA appendix A."""
    check_label(dataset, label, False, "cluster")
    pick = parse_pick(pick)
    if clusters < 1:
        raise BadInput(f"--clusters must be >= 1, got {clusters}")
    classes = [label] if label is not None else list(range(dataset.num_classes))
    chosen: list[np.ndarray] = []
    per_class: dict[str, Any] = {}
    for cls in classes:
        rows = train_rows_of(dataset, cls)
        if len(rows) == 0:
            if label is not None:
                raise BadInput(f"class {cls} has no train records in {dataset.name}")
            continue  # a class absent from train cannot contribute a cluster
        if len(rows) < clusters:
            raise BadInput(
                f"class {cls} has {len(rows)} train records, fewer than --clusters {clusters}"
            )
        assign = kmeans_labels(dataset.x[rows], clusters, [int(seed), int(cls)])
        sizes = np.bincount(assign, minlength=clusters)
        which = _choose_cluster(sizes, pick)
        chosen.append(rows[assign == which])
        per_class[str(cls)] = {"cluster": which, "marked": int(sizes[which]),
                               "cluster_sizes": sorted(int(s) for s in sizes)}
    params = {"label": label, "clusters": clusters, "pick": pick, "seed": seed}
    return marked(dataset, "cluster", np.concatenate(chosen) if chosen else np.empty(0, np.int64),
                   params, {"classes": per_class})


# --------------------------------------------------------------------------- random / class


def mark_random(dataset: Dataset, *, fraction: float | None = None, count: int | None = None,
                label: int | None = None, seed: int = 0) -> Marking:
    """``count`` or ``round(fraction * n)`` train records (of class ``label``) drawn uniformly."""
    check_label(dataset, label, False, "random")
    pool = train_rows_of(dataset, label)
    if len(pool) == 0:
        raise BadInput(f"no train records to mark in {dataset.name}" + (f" with label {label}" if label is not None else ""))
    k = count_for(len(pool), "random", fraction=fraction, count=count)
    rows = np.random.default_rng(seed).choice(pool, size=k, replace=False)
    return marked(dataset, "random", rows, {**amount_params(fraction, count), "label": label, "seed": seed},
                   {"pool": int(len(pool))})


def mark_class(dataset: Dataset, *, label: int | None) -> Marking:
    """Every train record of class ``label``."""
    check_label(dataset, label, True, "class")
    rows = train_rows_of(dataset, label)
    if len(rows) == 0:
        raise BadInput(f"class {label} has no train records in {dataset.name}")
    return marked(dataset, "class", rows, {"label": label}, {})


# --------------------------------------------------------------------------- entry


def mark(dataset: Dataset, strategy: str, *, label: int | None = None, fraction: float | None = None,
         count: int | None = None, clusters: int | None = None, pick: str | int | None = None, seed: int = 0,
         checkpoint_meta: dict[str, Any] | None = None, key: LedgerKey | None = None) -> Marking:
    """Dispatch to one strategy, refusing options that do not apply to it.

    ``clusters``/``pick`` left as None take their defaults (8, smallest).
    """
    if strategy not in STRATEGIES:
        raise BadInput(f"--strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    if fraction is not None and count is not None:
        raise BadInput("give --fraction F or --count N, not both")
    given = {"--checkpoint": checkpoint_meta is not None, "--fraction": fraction is not None,
             "--count": count is not None, "--clusters": clusters is not None, "--pick": pick is not None,
             "--label": label is not None}
    applies = {
        "cluster": {"--label", "--clusters", "--pick"},
        "random": {"--fraction", "--count", "--label"},
        "class": {"--label"},
        "ordered": {"--fraction", "--count", "--checkpoint"},
    }[strategy]
    stray = [opt for opt, on in given.items() if on and opt not in applies]
    if stray:
        raise BadInput(f"{', '.join(stray)} does not apply to --strategy {strategy} "
                       f"(it takes {', '.join(sorted(applies))})")
    if strategy == "cluster":
        return mark_cluster(dataset, label=label, clusters=DEFAULT_CLUSTERS if clusters is None else clusters,
                            pick=DEFAULT_PICK if pick is None else pick, seed=seed)
    if strategy == "random":
        return mark_random(dataset, fraction=fraction, count=count, label=label, seed=seed)
    if strategy == "class":
        return mark_class(dataset, label=label)
    if checkpoint_meta is None:
        raise BadInput("--strategy ordered needs --checkpoint CKPT (its recorded training order)")
    return mark_ordered(dataset, checkpoint_meta, fraction=fraction, count=count, seed=seed, key=key)

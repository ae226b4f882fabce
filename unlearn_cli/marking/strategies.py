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
    ``round(fraction * n)`` train records drawn without replacement (from one
    class with ``label``): the paper's Random scenario.
``class``
    Every train record of class ``label``.
``ordered``
    The paper's Ordered scenario: records that sit in as few recorded training
    batches (plain checkpoints, the Amnesiac update log) or SISA shards/slices
    as the checkpoint allows; see :func:`mark_ordered`.

Only train-split records are ever marked. This module imports neither torch
nor the checkpoint loader at import time: ``mark`` stays a fast command.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unlearn_cli.errors import BadInput
from unlearn_cli.data.manifest import Dataset

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


@dataclass
class Marking:
    """The outcome of one marking: the rows, their IDs and how they were chosen."""

    strategy: str
    rows: np.ndarray                  # row indices into the data set, ascending; all train rows
    ids: list[str]                    # the IDs of ``rows``, in the same order
    params: dict[str, Any]            # the parameters that reproduce this marking
    details: dict[str, Any] = field(default_factory=dict)  # what the strategy saw (cluster sizes, batches)

    def header(self, dataset: Dataset) -> str:
        """The ``#`` comment block of the ids file: strategy, parameters, source."""
        params = " ".join(f"{k}={v}" for k, v in self.params.items() if v is not None)
        return (
            f"unlearn mark --strategy {self.strategy} {params}\n"
            f"data set {dataset.name} (data sha256 {dataset.data_sha256[:16]}): "
            f"{len(self.ids)} of {int(dataset.train.sum())} train records"
        )


def _result(dataset: Dataset, strategy: str, rows: np.ndarray, params: dict[str, Any],
            details: dict[str, Any]) -> Marking:
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if rows.size == 0:
        raise BadInput(f"--strategy {strategy} marked no records; check --label / --fraction")
    # Every strategy draws from train rows; this guards the contract itself.
    assert bool(dataset.train[rows].all()), "marking picked a non-train row"
    return Marking(strategy, rows, [dataset.ids[i] for i in rows], params, details)


def _check_label(dataset: Dataset, label: int | None, required: bool, strategy: str) -> None:
    if label is None:
        if required:
            raise BadInput(f"--strategy {strategy} needs --label L (a class 0..{dataset.num_classes - 1})")
        return
    if not 0 <= label < dataset.num_classes:
        raise BadInput(f"--label must be a class 0..{dataset.num_classes - 1} of {dataset.name}, got {label}")


def _train_rows_of(dataset: Dataset, label: int | None) -> np.ndarray:
    rows = dataset.train_indices()
    return rows if label is None else rows[dataset.y[rows] == label]


def _count(fraction: float | None, n: int, strategy: str) -> int:
    if fraction is None:
        raise BadInput(f"--strategy {strategy} needs --fraction F (0 < F <= 1)")
    if not 0.0 < fraction <= 1.0:
        raise BadInput(f"--fraction must be in (0, 1], got {fraction}")
    # At least one record: a fraction that rounds to nothing is still a request.
    return max(1, int(round(fraction * n)))


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
    _check_label(dataset, label, False, "cluster")
    pick = parse_pick(pick)
    if clusters < 1:
        raise BadInput(f"--clusters must be >= 1, got {clusters}")
    classes = [label] if label is not None else list(range(dataset.num_classes))
    chosen: list[np.ndarray] = []
    per_class: dict[str, Any] = {}
    for cls in classes:
        rows = _train_rows_of(dataset, cls)
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
    return _result(dataset, "cluster", np.concatenate(chosen) if chosen else np.empty(0, np.int64),
                   params, {"classes": per_class})


# --------------------------------------------------------------------------- random / class


def mark_random(dataset: Dataset, *, fraction: float | None, label: int | None = None,
                seed: int = 0) -> Marking:
    """``round(fraction * n)`` train records (of class ``label``) drawn uniformly."""
    _check_label(dataset, label, False, "random")
    pool = _train_rows_of(dataset, label)
    if len(pool) == 0:
        raise BadInput(f"no train records to mark in {dataset.name}" + (f" with label {label}" if label is not None else ""))
    k = _count(fraction, len(pool), "random")
    rows = np.random.default_rng(seed).choice(pool, size=min(k, len(pool)), replace=False)
    return _result(dataset, "random", rows, {"fraction": fraction, "label": label, "seed": seed},
                   {"pool": int(len(pool))})


def mark_class(dataset: Dataset, *, label: int | None) -> Marking:
    """Every train record of class ``label``."""
    _check_label(dataset, label, True, "class")
    rows = _train_rows_of(dataset, label)
    if len(rows) == 0:
        raise BadInput(f"class {label} has no train records in {dataset.name}")
    return _result(dataset, "class", rows, {"label": label}, {})


# --------------------------------------------------------------------------- ordered


def batch_membership(n: int, batch_size: int, epochs: int, seed: int) -> np.ndarray:
    """(n, epochs) global batch number of every train position in every epoch.

    Replays ``training.batch_schedule``, the one source of the batch order.
    """
    from unlearn_cli.training.loop import batch_schedule

    member = np.empty((n, epochs), dtype=np.int64)
    for epoch, step, positions in batch_schedule(n, batch_size, epochs, seed):
        member[positions, epoch] = step
    return member


#: Starting records the ordered greedy tries (keeping the best result): the
#: first pick decides which batches the rest can share, and all first picks
#: look alike until one is made.
GREEDY_STARTS = 8


def _greedy_from(member: np.ndarray, k: int, first: int, order: np.ndarray, starts: np.ndarray,
                 tiebreak: np.ndarray) -> np.ndarray:
    n, epochs = member.shape
    cost = np.full(n, epochs, dtype=np.int64)
    touched = np.zeros(len(starts) - 1, dtype=bool)
    taken = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    pos = first
    for _ in range(k):
        chosen.append(pos)
        taken[pos] = True
        for batch in member[pos]:
            if not touched[batch]:
                touched[batch] = True
                cost[order[starts[batch] : starts[batch + 1]] // epochs] -= 1
        if len(chosen) == k:
            break
        # argmin of (new batches it would add, tiebreak) over untaken records.
        key = np.where(taken, np.iinfo(np.int64).max, cost * n + tiebreak)
        pos = int(np.argmin(key))
    return np.asarray(chosen, dtype=np.int64)


def fewest_batches(member: np.ndarray, k: int, seed: int = 0, tries: int = GREEDY_STARTS) -> np.ndarray:
    """Greedy choice of ``k`` positions whose batches (over all epochs) are fewest.

    Removing a record with Amnesiac ML means subtracting every recorded batch
    update that contained it: one batch per epoch, and each epoch reshuffles.
    The cost of a set is therefore the number of distinct batches its records
    sat in across all epochs. Minimising that exactly is a minimum k-union
    problem (NP-hard); the greedy adds, one at a time, the record that brings
    the fewest batches not yet touched (ties: a seeded random order), from
    ``tries`` seeded starting records, and keeps the best. Costs are updated
    incrementally as batches become touched.
    """
    n, _ = member.shape
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    total = int(member.max()) + 1
    # Positions (flattened) grouped by global batch, to update costs when a batch becomes touched.
    order = np.argsort(member.ravel(), kind="stable")
    starts = np.searchsorted(member.ravel()[order], np.arange(total + 1))
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    best: np.ndarray | None = None
    best_cost = None
    for first in rng.permutation(n)[: max(1, tries)]:
        chosen = _greedy_from(member, min(k, n), int(first), order, starts, tiebreak)
        cost = batches_touched(member, chosen)
        if best_cost is None or cost < best_cost:
            best, best_cost = chosen, cost
    assert best is not None
    return best


def batches_touched(member: np.ndarray, positions: np.ndarray) -> int:
    return int(np.unique(member[positions]).size)


def _first_batches(member: np.ndarray, k: int) -> np.ndarray:
    """Baseline: the records of the first batches of the first epoch."""
    first = np.argsort(member[:, 0], kind="stable")  # positions in epoch-0 order
    return first[:k]


def _ordered_plain(meta: dict[str, Any], n_train: int, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    from unlearn_cli.training.loop import Recipe

    recipe = Recipe.from_dict(meta.get("training", {}))
    if recipe.epochs < 1:
        raise BadInput("the checkpoint records 0 training epochs: there is no batch order to follow")
    member = batch_membership(n_train, recipe.batch_size, recipe.epochs, recipe.seed)
    greedy = fewest_batches(member, k, seed)
    baseline = _first_batches(member, k)
    g_cost, b_cost = batches_touched(member, greedy), batches_touched(member, baseline)
    use_greedy = g_cost <= b_cost
    picked = greedy if use_greedy else baseline
    per_epoch = [int(np.unique(member[picked, e]).size) for e in range(recipe.epochs)]
    return picked, {
        "unit": "batch",
        "batches_touched": min(g_cost, b_cost),
        "batches_total": int(member.max()) + 1,
        "batches_touched_first_batch_baseline": b_cost,
        "chosen_by": "greedy" if use_greedy else "first-epoch batches",
        "batches_touched_per_epoch_max": max(per_epoch),
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
    }


def _ordered_sisa(meta: dict[str, Any], n_train: int, k: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Fewest shards, and within them the latest slices (SISA retrains from the
    earliest affected slice of each affected shard onward)."""
    assignment = (meta.get("sisa") or {}).get("assignment")
    if assignment is None:
        raise BadInput("SISA checkpoint lacks sisa.assignment metadata: cannot tell which shard holds which record")
    try:
        arr = np.asarray(assignment, dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise BadInput("SISA checkpoint's sisa.assignment is not a list of [shard, slice] pairs") from None
    if len(arr) != n_train:
        raise BadInput(
            f"SISA checkpoint assigns {len(arr)} records but the data set has {n_train} train records"
        )
    shard, slc = arr[:, 0].copy(), arr[:, 1]
    # Records an earlier forget already removed (positions) are no longer in any shard.
    removed = np.asarray((meta.get("sisa") or {}).get("removed") or [], dtype=np.int64)
    shard[removed] = -1
    if k > int((shard >= 0).sum()):
        raise BadInput(f"--fraction asks for {k} records but the SISA checkpoint holds {(shard >= 0).sum()}")
    sizes = np.bincount(shard[shard >= 0], minlength=int(arr[:, 0].max()) + 1)
    # Fewest shards: the largest first (ties: lower shard id).
    by_size = np.lexsort((np.arange(len(sizes)), -sizes))
    need = int(np.searchsorted(np.cumsum(sizes[by_size]), k) + 1)
    shards = by_size[:need]
    picked: list[int] = []
    # Fill slice level by level from the last slice backwards across the chosen
    # shards, so the earliest slice any shard must retrain from stays as late as possible.
    for level in range(int(slc.max()), -1, -1):
        for s in shards:
            rows = np.flatnonzero((shard == s) & (slc == level))
            picked.extend(rows[: k - len(picked)].tolist())
            if len(picked) >= k:
                break
        if len(picked) >= k:
            break
    positions = np.asarray(picked, dtype=np.int64)
    earliest = {int(s): int(slc[positions[shard[positions] == s]].min())
                for s in np.unique(shard[positions])}
    return positions, {
        "unit": "shard",
        "shards_touched": int(np.unique(shard[positions]).size),
        "shards_total": int(len(sizes)),
        "earliest_slice_per_shard": earliest,
        "slices_total": int(slc.max()) + 1,
    }


def mark_ordered(dataset: Dataset, meta: dict[str, Any], *, fraction: float | None,
                 seed: int = 0) -> Marking:
    """The paper's Ordered scenario: records packed into as few recorded
    training batches (plain checkpoints) or SISA shards/slices as possible.

    ``meta`` is the checkpoint's ``unlearn`` metadata (``read_header_meta``).
    Batch positions index the train rows in ``dataset.train_indices()`` order,
    the order ``unlearn train`` trained on.
    """
    train_rows = dataset.train_indices()
    recorded = (meta.get("dataset") or {}).get("train_ids_digest")
    if recorded and recorded != dataset.train_id_digest():
        raise BadInput(
            f"{dataset.manifest_path.name}: its train split is not the one the checkpoint was trained on "
            f"(train-ID digest {dataset.train_id_digest()[:12]} != recorded {recorded[:12]})"
        )
    k = _count(fraction, len(train_rows), "ordered")
    kind = meta.get("kind", "plain")
    if kind == "sisa":
        positions, details = _ordered_sisa(meta, len(train_rows), k)
    elif kind == "plain":
        positions, details = _ordered_plain(meta, len(train_rows), k, seed)
    else:
        raise BadInput(f"--strategy ordered does not know the training order of '{kind}' checkpoints")
    if meta.get("lineage"):
        details["note"] = ("the checkpoint already had removals applied; the order is the one "
                           "recorded for its original training run")
    return _result(dataset, "ordered", train_rows[positions],
                   {"fraction": fraction, "seed": seed, "checkpoint_kind": kind}, details)


# --------------------------------------------------------------------------- entry


def mark(dataset: Dataset, strategy: str, *, label: int | None = None, fraction: float | None = None,
         clusters: int | None = None, pick: str | int | None = None, seed: int = 0,
         checkpoint_meta: dict[str, Any] | None = None) -> Marking:
    """Dispatch to one strategy, refusing options that do not apply to it.

    ``clusters``/``pick`` left as None take their defaults (8, smallest).
    """
    if strategy not in STRATEGIES:
        raise BadInput(f"--strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    given = {"--checkpoint": checkpoint_meta is not None, "--fraction": fraction is not None,
             "--clusters": clusters is not None, "--pick": pick is not None, "--label": label is not None}
    applies = {
        "cluster": {"--label", "--clusters", "--pick"},
        "random": {"--fraction", "--label"},
        "class": {"--label"},
        "ordered": {"--fraction", "--checkpoint"},
    }[strategy]
    stray = [opt for opt, on in given.items() if on and opt not in applies]
    if stray:
        raise BadInput(f"{', '.join(stray)} does not apply to --strategy {strategy} "
                       f"(it takes {', '.join(sorted(applies))})")
    if strategy == "cluster":
        return mark_cluster(dataset, label=label, clusters=DEFAULT_CLUSTERS if clusters is None else clusters,
                            pick=DEFAULT_PICK if pick is None else pick, seed=seed)
    if strategy == "random":
        return mark_random(dataset, fraction=fraction, label=label, seed=seed)
    if strategy == "class":
        return mark_class(dataset, label=label)
    if checkpoint_meta is None:
        raise BadInput("--strategy ordered needs --checkpoint CKPT (its recorded training order)")
    return mark_ordered(dataset, checkpoint_meta, fraction=fraction, seed=seed)

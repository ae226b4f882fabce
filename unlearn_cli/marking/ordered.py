"""The paper's Ordered scenario: records packed into as few recorded training
batches (plain checkpoints, the Amnesiac update log) or SISA shards/slices as
the checkpoint allows (``unlearn mark --strategy ordered``).

Plain checkpoints: the batch order is replayed from the recorded recipe with
``training.loop.batch_schedule``, the one source of the batch order, and a
greedy picks records that share the fewest batches (see :func:`fewest_batches`).
SISA checkpoints: the recorded ``sisa.assignment`` says which shard and slice
holds each record; the fewest shards are filled from their latest slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unlearn_cli.data.dataset import Dataset
from unlearn_cli.errors import BadInput
from unlearn_cli.marking.result import Marking, amount_params, count_for, marked
from unlearn_cli.models.checkpoint import removal_steps
from unlearn_cli.ops.digests import LedgerKey


def batch_membership(n: int, batch_size: int, epochs: int, seed: int) -> np.ndarray:
    """(n, epochs) global batch number of every train position in every epoch.

    Replays ``training.loop.batch_schedule``, the one source of the batch order.
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

    if not meta.get("training"):  # imported without a recipe (training/importing.py): no order recorded
        raise BadInput("the checkpoint records no training recipe (imported without --recipe): "
                       "there is no batch order to follow")
    recipe = Recipe.from_dict(meta["training"])
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
        raise BadInput(f"asked for {k} records but the SISA checkpoint holds {(shard >= 0).sum()}")
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


def mark_ordered(dataset: Dataset, meta: dict[str, Any], *, fraction: float | None = None,
                 count: int | None = None, seed: int = 0, key: LedgerKey | None = None) -> Marking:
    """The paper's Ordered scenario: records packed into as few recorded
    training batches (plain checkpoints) or SISA shards/slices as possible.

    ``meta`` is the checkpoint's ``unlearn`` metadata (``read_header_meta``).
    Batch positions index the train rows in ``dataset.train_indices()`` order,
    the order ``unlearn train`` trained on. A SISA checkpoint records the
    records removed earlier as digests (keyed with the ledger ``key`` when it
    was given); their positions are recomputed from the data set so that they
    are never marked again.
    """
    train_rows = dataset.train_indices()
    recorded = (meta.get("dataset") or {}).get("train_ids_digest")
    if recorded and recorded != dataset.train_id_digest():
        raise BadInput(
            f"{dataset.manifest_path.name}: its train split is not the one the checkpoint was trained on "
            f"(train-ID digest {dataset.train_id_digest()[:12]} != recorded {recorded[:12]})"
        )
    k = count_for(len(train_rows), "ordered", fraction=fraction, count=count)
    kind = meta.get("kind", "plain")
    if kind == "sisa":
        from unlearn_cli.models.ensemble import is_sealed, unseal_removed  # imports torch: SISA only

        sisa = meta.get("sisa") or {}
        if is_sealed(sisa):
            meta = {**meta, "sisa": unseal_removed(sisa, list(dataset.train_ids), key, "--checkpoint")}
        positions, details = _ordered_sisa(meta, len(train_rows), k)
    elif kind == "plain":
        positions, details = _ordered_plain(meta, len(train_rows), k, seed)
    else:
        raise BadInput(f"--strategy ordered does not know the training order of '{kind}' checkpoints")
    if removal_steps(meta.get("lineage") or []):
        details["note"] = ("the checkpoint already had removals applied; the order is the one "
                           "recorded for its original training run")
    return marked(dataset, "ordered", train_rows[positions],
                   {**amount_params(fraction, count), "seed": seed, "checkpoint_kind": kind}, details)

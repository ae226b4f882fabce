"""SISA training (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021).

Sharded, Isolated, Sliced, Aggregated: the train records are split at random
into ``shards`` disjoint shards; each shard trains its own constituent model in
isolation (no information flows between constituents); each shard is further
split into ``slices`` and its constituent is trained incrementally: on slice 0,
then on slices 0..1, ..., then on all slices, with the constituent's state
saved after every slice. Prediction aggregates the constituents
(``models/ensemble.py``). To forget records, only the constituents whose shard
holds one are retrained, each from its state saved just before the earliest
slice that holds one, which is exactly the model it would have been had those
records never been there.

Choices, and why:

* Sharding and slicing are uniform at random (the paper's default): one seeded
  permutation of the train positions, cut into nearly equal shards, each cut
  into nearly equal slices (``numpy.array_split``).
* Epochs per slice follow the reference implementation
  (cleverhans-lab/machine-unlearning, ``sisa.py``): with ``e`` the recipe's
  epochs and ``R`` slices, slice ``r`` (0-based) trains for
  ``floor((r+1) * 2e/(R+1)) - floor(r * 2e/(R+1))`` epochs on slices 0..r.
  The total work then equals ``e`` epochs on the whole shard, i.e. slicing
  costs no more than training without it (the paper's argument in IV-B).
* Every slice step builds a fresh optimizer from the recipe: a constituent's
  state is its weights alone, so retraining from a saved slice state is
  bit-for-bit the run that never saw the removed records (on the same device).
* Seeds: the constituent of shard ``i`` is initialised with
  ``derive_seed(seed, "init", i)``; its batch order on slice step ``r`` uses
  ``derive_seed(seed, "slice", i, r)``; the assignment uses
  ``derive_seed(seed, "assign")``. ``seed`` is the recipe's seed.
* Records a forget removed are tracked, in memory, as positions into
  ``dataset.train_indices()`` (``sisa.removed``), so a later forget never
  brings them back into a retrained shard. Positions plus the data set name
  the IDs, so a published checkpoint holds the digests of their IDs instead
  (keyed with the ledger key; ``models.ensemble.seal_removed``) and per-shard
  counts; the forget workflow recomputes the positions from the data set.
  A shard left with no records drops out of the aggregate.

The library reports progress through callbacks (``shards`` and ``slice steps``,
totals up front); it never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from unlearn_cli.errors import BadInput
from unlearn_cli.models.ensemble import is_sealed, prefixed, read_meta, unprefixed
from unlearn_cli.ops.digests import derive_seed
from unlearn_cli.ops.progress import Counter, Progress
from unlearn_cli.training.parallel import spread

AGGREGATES = ("vote", "mean")
SIDECAR = "sisa-slices"


def epochs_per_slice(epochs: int, slices: int) -> list[int]:
    """Epochs of each slice step, as in the reference implementation (see module doc)."""
    return [((r + 1) * 2 * epochs) // (slices + 1) - (r * 2 * epochs) // (slices + 1) for r in range(slices)]


def assign(n_train: int, shards: int, slices: int, seed: int) -> np.ndarray:
    """(n_train, 2) int array: the [shard, slice] of every train position."""
    if shards < 1:
        raise BadInput(f"--sisa-shards must be >= 1, got {shards}")
    if slices < 1:
        raise BadInput(f"--sisa-slices must be >= 1, got {slices}")
    if shards * slices > n_train:
        raise BadInput(
            f"--sisa-shards {shards} x --sisa-slices {slices} = {shards * slices} slices for only "
            f"{n_train} train records; every slice needs at least one record"
        )
    perm = np.random.default_rng(derive_seed(seed, "assign")).permutation(n_train)
    out = np.empty((n_train, 2), dtype=np.int64)
    for i, shard in enumerate(np.array_split(perm, shards)):
        for r, part in enumerate(np.array_split(shard, slices)):
            out[part, 0] = i
            out[part, 1] = r
    return out


def slice_positions(assignment: np.ndarray, shard: int, slices: int, removed: np.ndarray) -> list[np.ndarray]:
    """Train positions of each slice of ``shard`` (ascending), without removed ones."""
    keep = np.ones(len(assignment), dtype=bool)
    keep[removed] = False
    in_shard = (assignment[:, 0] == shard) & keep
    return [np.flatnonzero(in_shard & (assignment[:, 1] == r)) for r in range(slices)]


def _snapshot(model) -> dict[str, Any]:
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def train_constituent(
    x,
    y,
    positions: list[np.ndarray],
    arch: dict[str, Any],
    recipe,
    seed: int,
    shard: int,
    *,
    start_slice: int = 0,
    start_state: dict[str, Any] | None = None,
    device="cpu",
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train one constituent incrementally over its slices; its state after each slice.

    ``x``/``y`` hold every train record (indexed by train position);
    ``positions[r]`` are the positions of slice ``r``. Starting at
    ``start_slice`` needs ``start_state``, the state saved after slice
    ``start_slice - 1`` (slice 0 starts from the seeded initialisation).
    Returns the states after slices ``start_slice .. R-1``.
    """
    import torch

    from unlearn_cli.training.loop import init_model, train_model

    slices = len(positions)
    epochs = epochs_per_slice(recipe.epochs, slices)
    model = init_model(arch, derive_seed(seed, "init", shard)).to(device)
    if start_slice > 0:
        if start_state is None:
            raise ValueError("start_state is required when start_slice > 0")
        model.load_state_dict({k: v.to(device) for k, v in start_state.items()})
    states: list[dict[str, Any]] = []
    for r in range(start_slice, slices):
        rows = np.concatenate(positions[: r + 1])
        if epochs[r] > 0 and len(rows) > 0:
            step_recipe = replace(recipe, epochs=epochs[r], seed=derive_seed(seed, "slice", shard, r))
            idx = torch.from_numpy(rows)
            train_model(model, x[idx], y[idx], step_recipe, device=device)
        states.append(_snapshot(model))
        if progress is not None:
            progress(1)
    return states


@dataclass
class SisaTrained:
    state: dict[str, Any]               # final weights, ``shard{i}.`` prefixes
    meta: dict[str, Any]                # the checkpoint's ``sisa`` entry
    slice_states: dict[str, Any]        # ``shard{i}.slice{r}.<param>``: the sidecar
    info: dict[str, Any] = field(default_factory=dict)


def _train_tensors(dataset, device):
    from unlearn_cli.data.tensors import tensors

    return tensors(dataset, dataset.train_indices(), device)


def _meta(shards, slices, aggregate, assignment, removed, epochs) -> dict[str, Any]:
    live = np.bincount(np.delete(assignment[:, 0], removed), minlength=shards)
    return {
        "shards": int(shards),
        "slices": int(slices),
        "aggregate": aggregate,
        "assignment": assignment.tolist(),
        "removed": sorted(int(p) for p in removed),
        "shard_records": [int(n) for n in live],
        "epochs_per_slice": epochs_per_slice(epochs, slices),
        "sidecar": SIDECAR,
        "seeds": "init: derive_seed(seed,'init',shard); batches: derive_seed(seed,'slice',shard,slice)",
    }


def train_sisa(dataset, arch: dict[str, Any], recipe, shards: int, slices: int, aggregate: str = "vote", *,
               device="cpu", progress: Progress | None = None) -> SisaTrained:
    """SISA-train ``shards`` constituents on the data set's train split."""
    if aggregate not in AGGREGATES:
        raise BadInput(f"--sisa-aggregate must be one of {', '.join(AGGREGATES)}, got '{aggregate}'")
    n_train = int(dataset.train.sum())
    assignment = assign(n_train, shards, slices, recipe.seed)
    removed = np.empty(0, dtype=np.int64)
    x, y = _train_tensors(dataset, device)
    shards_done, tick = Counter(progress, "shards", shards), Counter(progress, "slice steps", shards * slices)
    state: dict[str, Any] = {}
    slice_states: dict[str, Any] = {}

    def one(i: int) -> list[dict[str, Any]]:
        positions = slice_positions(assignment, i, slices, removed)
        return train_constituent(x, y, positions, arch, recipe, recipe.seed, i, device=device, progress=tick)

    trained = spread(list(range(shards)), one, lambda i: slices, arch, on_done=shards_done)
    for i in range(shards):
        states = trained[i]
        for r, st in enumerate(states):
            slice_states.update(prefixed(f"shard{i}.slice{r}.", st))
        state.update(prefixed(f"shard{i}.", states[-1]))
    meta = _meta(shards, slices, aggregate, assignment, removed, recipe.epochs)
    info = {"epochs_per_slice": meta["epochs_per_slice"], "shard_records": meta["shard_records"]}
    if any(e == 0 for e in meta["epochs_per_slice"]):
        info["warning"] = (f"with {recipe.epochs} epochs and {slices} slices some slice steps train 0 epochs "
                           f"({meta['epochs_per_slice']}); raise --epochs")
    return SisaTrained(state, meta, slice_states, info)


def constituent_metrics(state: dict[str, Any], meta: dict[str, Any], dataset, device="cpu") -> list[dict[str, Any]]:
    """Each constituent's own test accuracy: how weak the shard-trained learners are."""
    from unlearn_cli.models.registry import build
    from unlearn_cli.models.predict import evaluate_rows

    rows = []
    for shard, records in enumerate(meta["sisa"]["shard_records"]):
        model = build(meta["arch"])
        model.load_state_dict(unprefixed(f"shard{shard}.", state))
        test = evaluate_rows(model.to(device).eval(), dataset, dataset.test_indices(), device)
        rows.append({"shard": shard, "records": records, "test_accuracy": test["accuracy"]})
    return rows


def _restart_points(earliest: dict[int, int], slice_states: dict[str, Any] | None,
                    warn: Callable[[str], None]) -> dict[int, tuple[int, dict[str, Any] | None, str]]:
    """Per shard to retrain: (first slice, the state to start from, where it resumed from)."""
    starts: dict[int, tuple[int, dict[str, Any] | None, str]] = {}
    for shard in sorted(earliest):
        start = earliest[shard]
        start_state = None
        resumed = "initialisation" if start == 0 else "slice state"
        if start > 0:
            start_state = unprefixed(f"shard{shard}.slice{start - 1}.", slice_states or {})
            if not start_state:
                warn(f"no saved state for shard {shard} slice {start - 1} (sidecar '{SIDECAR}' missing); "
                     f"retraining shard {shard} from its initialisation instead (exact, slower)")
                start, start_state, resumed = 0, None, "initialisation (sidecar missing)"
        starts[shard] = (start, start_state, resumed)
    return starts


@dataclass
class SisaForgot:
    state: dict[str, Any]
    meta: dict[str, Any]
    slice_states: dict[str, Any]
    report: dict[str, Any]


def forget_sisa(ckpt, dataset, forget_rows: np.ndarray, slice_states: dict[str, Any] | None, *,
                device="cpu", progress: Progress | None = None,
                warn: Callable[[str], None] = lambda m: None, retrain_all: bool = False) -> SisaForgot:
    """Retrain the constituents whose shards held any of ``forget_rows`` (data set rows).

    Each affected constituent restarts from its state saved after the slice
    before the earliest affected one (``slice_states``, the sidecar); without
    the sidecar it restarts from slice 0, which is just as exact, only slower.
    ``retrain_all`` retrains every constituent from scratch (method retrain).
    """
    from unlearn_cli.training.loop import Recipe

    if is_sealed(ckpt.meta.get("sisa") or {}):
        raise BadInput(f"{ckpt.path}: its removed SISA records are sealed as digests; recompute their positions "
                       "from the data set first (models.ensemble.unseal_removed)")
    shards, slices, assignment, removed = read_meta(ckpt)
    recipe = Recipe.from_dict(ckpt.training)
    train_rows = dataset.train_indices()
    positions = np.searchsorted(train_rows, forget_rows)
    if len(positions) and (positions.max() >= len(train_rows) or not np.array_equal(train_rows[positions], forget_rows)):
        raise BadInput("a requested record is not in the train split the SISA checkpoint was trained on")
    already = np.intersect1d(positions, removed)
    new = np.setdiff1d(positions, removed)
    all_removed = np.union1d(removed, new)

    earliest: dict[int, int] = {}
    for p in new:
        s, r = int(assignment[p, 0]), int(assignment[p, 1])
        earliest[s] = min(earliest.get(s, slices), r)
    if retrain_all:
        earliest = {i: 0 for i in range(shards)}
    x, y = _train_tensors(dataset, device)
    state = {k: v.clone() for k, v in ckpt.state.items()}
    new_slices: dict[str, Any] = dict(slice_states) if slice_states is not None else {}
    retrained = []
    total = sum(slices - r for r in earliest.values())
    shards_done, tick = Counter(progress, "shards", len(earliest)), Counter(progress, "slice steps", total)
    starts = _restart_points(earliest, slice_states, warn)

    def one(shard: int) -> list[dict[str, Any]]:
        start, start_state, _ = starts[shard]
        pos = slice_positions(assignment, shard, slices, all_removed)
        return train_constituent(x, y, pos, ckpt.arch, recipe, recipe.seed, shard, start_slice=start,
                                 start_state=start_state, device=device, progress=tick)

    trained = spread(sorted(earliest), one, lambda shard: slices - starts[shard][0], ckpt.arch,
                     on_done=shards_done)
    for shard in sorted(earliest):
        start, _, resumed = starts[shard]
        pos = slice_positions(assignment, shard, slices, all_removed)
        states = trained[shard]
        for k in [k for k in state if k.startswith(f"shard{shard}.")]:
            del state[k]
        state.update(prefixed(f"shard{shard}.", states[-1]))
        for r, st in zip(range(start, slices), states):
            new_slices.update(prefixed(f"shard{shard}.slice{r}.", st))
        retrained.append({
            "shard": shard,
            "from_slice": start,
            "slices_retrained": list(range(start, slices)),
            "records_removed": int(np.sum(assignment[new, 0] == shard)),
            "records_left": int(sum(len(p) for p in pos)),
            "resumed_from": resumed,
        })
    meta = _meta(shards, slices, (ckpt.meta.get("sisa") or {}).get("aggregate", "vote"), assignment,
                 all_removed, recipe.epochs)
    have = {k.split(".", 2)[0] + "." + k.split(".", 2)[1] for k in new_slices}
    complete = all(f"shard{i}.slice{r}" in have for i in range(shards) for r in range(slices))
    report = {
        "shards_retrained": [e["shard"] for e in retrained],
        "retrained": retrained,
        "untouched_shards": [i for i in range(shards) if i not in earliest],
        "slice_steps_retrained": int(total),
        "slice_steps_total": int(shards * slices),
        "already_removed": int(len(already)),
        "newly_removed": int(len(new)),
        "empty_shards": [i for i, n in enumerate(meta["shard_records"]) if n == 0],
        "slice_states_complete": bool(complete),
    }
    return SisaForgot(state, meta, new_slices, report)

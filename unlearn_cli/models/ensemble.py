"""SISA ensembles: the constituents of a SISA checkpoint, aggregated into one predictor.

``models.predict.load_predictor`` returns this for every non-plain checkpoint, so
every command that predicts (evaluate, attack, debug-labels, forget's
before/after metrics) sees the aggregate, never a single constituent.

The output is a score per class that plays the role of logits (its softmax is
the predicted distribution):

``vote`` (the SISA paper's default, majority vote of the constituents' labels)
    ``log((votes_k + 1/2) / (S + C/2))``: the log of the vote shares with
    add-1/2 smoothing, so a unanimous vote is a confident but finite
    prediction and cross-entropy stays defined. The arg-max is the majority
    label; ties go to the lower class index, as ``argmax`` over summed one-hot
    votes does in the reference implementation.
``mean`` (the paper's alternative, averaging the constituents' softmax outputs)
    ``log(mean_i softmax(f_i(x)))``.

Shards whose records were all removed drop out of the aggregate (a constituent
trained on nothing is not a voter).

Removed records in a published checkpoint: ``sisa.removed_digests`` (the
digest of each removed ID, HMAC-SHA256 under the ledger key whose id is
``sisa.removed_key_id``, plain SHA-256 when that is null) and
``sisa.removed_count``; ``sisa.shard_records`` (records left per shard) is all
prediction needs. Train positions plus the data set would name the IDs, so
positions (``sisa.removed``) live only in memory during a forget run
(``unseal_removed`` recomputes them from the data set, ``seal_removed``
turns them back into digests). Checkpoints written before this still hold
``sisa.removed`` positions and load as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.digests import LedgerKey, id_digest, key_id_of

#: Add-1/2 (Jeffreys) smoothing of vote shares.
VOTE_SMOOTHING = 0.5


class SisaEnsemble(nn.Module):
    def __init__(self, constituents: list[nn.Module], aggregate: str, num_classes: int):
        super().__init__()
        if aggregate not in ("vote", "mean"):
            raise BadInput(f"unknown SISA aggregate '{aggregate}' (vote or mean)")
        if not constituents:
            raise BadInput("SISA checkpoint has no constituent with any training record left")
        self.constituents = nn.ModuleList(constituents)
        self.aggregate = aggregate
        self.num_classes = int(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [m(x) for m in self.constituents]
        if self.aggregate == "mean":
            probs = torch.stack([torch.softmax(o.float(), 1) for o in outs]).mean(0)
            return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
        votes = torch.zeros(x.shape[0], self.num_classes, device=x.device)
        for o in outs:
            votes.scatter_add_(1, o.argmax(1, keepdim=True), torch.ones(x.shape[0], 1, device=x.device))
        total = len(outs) + self.num_classes * VOTE_SMOOTHING
        return torch.log((votes + VOTE_SMOOTHING) / total)


def load_ensemble(ckpt: Any, device: Any = "cpu") -> SisaEnsemble:
    """The aggregated predictor of a SISA checkpoint (eval mode)."""
    from unlearn_cli.models.checkpoint import load_error_detail
    from unlearn_cli.models.registry import build

    if ckpt.kind != "sisa":
        raise BadInput(f"{ckpt.path}: checkpoint kind '{ckpt.kind}' has no ensemble predictor")
    sisa = ckpt.meta.get("sisa") or {}
    models = []
    for shard in live_shards(ckpt):
        model = build(ckpt.arch)
        state = unprefixed(f"shard{shard}.", ckpt.state)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BadInput(f"{ckpt.path}: shard {shard} weights do not fit architecture "
                           f"'{ckpt.arch.get('name')}' ({load_error_detail(exc)})") from None
        models.append(model)
    num_classes = int(ckpt.arch.get("kwargs", {}).get("num_classes", 0)) or None
    if num_classes is None:
        raise BadInput(f"{ckpt.path}: arch entry lacks num_classes")
    return SisaEnsemble(models, sisa.get("aggregate", "vote"), num_classes).to(device).eval()


def prefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in state.items()}


def unprefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def read_meta(ckpt) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(shards, slices, assignment, removed positions) from a SISA checkpoint, validated.

    A checkpoint whose removed records are sealed as digests gives no positions here: ``unseal_removed``
    recomputes them from the data set (``is_sealed`` tells).
    """
    sisa = ckpt.meta.get("sisa") or {}
    try:
        shards, slices = int(sisa["shards"]), int(sisa["slices"])
        assignment = np.asarray(sisa["assignment"], dtype=np.int64).reshape(-1, 2)
        removed = np.asarray(sisa.get("removed", []), dtype=np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{ckpt.path}: SISA checkpoint has no valid 'sisa' metadata (shards, slices, assignment)") from None
    n_train = int(ckpt.dataset.get("n_train", len(assignment)))
    if len(assignment) != n_train:
        raise BadInput(f"{ckpt.path}: sisa.assignment covers {len(assignment)} records, the data set has {n_train}")
    if len(assignment) and (assignment[:, 0].max() >= shards or assignment[:, 1].max() >= slices or assignment.min() < 0):
        raise BadInput(f"{ckpt.path}: sisa.assignment names shards/slices outside {shards} x {slices}")
    if len(removed) and (removed.min() < 0 or removed.max() >= len(assignment)):
        raise BadInput(f"{ckpt.path}: sisa.removed names positions outside the {len(assignment)} train records")
    return shards, slices, assignment, removed


def live_shards(ckpt) -> list[int]:
    """Shards that still hold at least one record (the others drop out of the aggregate)."""
    sisa = ckpt.meta.get("sisa") or {}
    counts = sisa.get("shard_records")
    if "removed" not in sisa and isinstance(counts, list):
        try:
            shards = int(sisa["shards"])
            counts = [int(n) for n in counts]
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{ckpt.path}: sisa.shard_records is not a list of counts") from None
        if len(counts) != shards:
            raise BadInput(f"{ckpt.path}: sisa.shard_records has {len(counts)} counts for {shards} shards")
        return [i for i in range(shards) if counts[i] > 0]
    shards, _, assignment, removed = read_meta(ckpt)
    keep = np.ones(len(assignment), dtype=bool)
    keep[removed] = False
    counts = np.bincount(assignment[keep, 0], minlength=shards)
    return [i for i in range(shards) if counts[i] > 0]


def is_sealed(sisa: dict[str, Any]) -> bool:
    """Removed records recorded as digests, positions not yet recomputed."""
    return "removed" not in sisa and bool(sisa.get("removed_count") or sisa.get("removed_digests"))


def seal_removed(sisa: dict[str, Any], train_ids: list[str], key: LedgerKey | None) -> dict[str, Any]:
    """``sisa`` metadata with removed positions replaced by the digests of their IDs (keyed with ``key``)."""
    if "removed" not in sisa:
        return sisa
    positions = [int(p) for p in sisa["removed"]]
    sealed = {k: v for k, v in sisa.items() if k != "removed"}
    sealed["removed_count"] = len(positions)
    sealed["removed_key_id"] = key_id_of(key)
    sealed["removed_digests"] = sorted(id_digest(train_ids[p], key) for p in positions)
    return sealed


def unseal_removed(sisa: dict[str, Any], train_ids: list[str], key: LedgerKey | None,
                   where: str) -> dict[str, Any]:
    """``sisa`` metadata with ``removed`` train positions recomputed from the digests and the data set."""
    if "removed" in sisa or "removed_digests" not in sisa:
        return sisa
    recorded = sisa.get("removed_key_id")
    if recorded is not None and recorded != key_id_of(key):
        mine = f"this run's key id is {key.key_id}" if key is not None else "this run has no ledger key"
        raise BadInput(f"{where}: its removed SISA records are sealed under ledger key id {recorded} and {mine}; "
                       "pass that --ledger-key")
    try:
        digests = {str(d) for d in sisa["removed_digests"]}
        count = int(sisa.get("removed_count", len(digests)))
    except (TypeError, ValueError):
        raise BadInput(f"{where}: sisa.removed_digests is not a list of digests") from None
    use = key if recorded is not None else None
    positions = [p for p, rid in enumerate(train_ids) if id_digest(rid, use) in digests]
    if len(positions) != count:
        raise BadInput(f"{where}: the data set holds {len(positions)} of the {count} records the SISA "
                       "checkpoint says were removed; is it the data set the checkpoint was trained on?")
    opened = {k: v for k, v in sisa.items() if k not in ("removed_digests", "removed_count", "removed_key_id")}
    opened["removed"] = positions
    return opened

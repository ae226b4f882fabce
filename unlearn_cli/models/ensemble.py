"""SISA ensembles: the constituents of a SISA checkpoint, aggregated into one predictor.

``workflow.load_predictor`` returns this for every non-plain checkpoint, so
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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import BadInput

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
    from ..sisa import live_shards, unprefixed
    from .registry import build

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
            detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
            raise BadInput(f"{ckpt.path}: shard {shard} weights do not fit architecture "
                           f"'{ckpt.arch.get('name')}' ({detail})") from None
        models.append(model)
    num_classes = int(ckpt.arch.get("kwargs", {}).get("num_classes", 0)) or None
    if num_classes is None:
        raise BadInput(f"{ckpt.path}: arch entry lacks num_classes")
    return SisaEnsemble(models, sisa.get("aggregate", "vote"), num_classes).to(device).eval()

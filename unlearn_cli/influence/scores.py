"""Per-record influence scores and weighted gradient sums, without per-record gradients.

* ``psi`` (equation 9) for any set of records is ONE forward-mode pass:
  psi_i = grad L(x_i)^T v  =  d/dt L(x_i, theta + t v) at t=0, i.e.
  ``torch.func.jvp`` of the per-record loss vector in direction v.
* ``weighted_grad`` sum_i w_i grad L(x_i) is ONE backward pass of a weighted loss.
Both run in chunks to bound memory. ``vmap(grad)`` is used only by the tests.

Under ``torchrun`` (``ops/dist.py``) each of these passes splits its records
into one contiguous block per rank and combines the blocks with one
all-reduce: psi and the criterion's logits are gathered row for row (exact),
gradient sums are summed (equal to one process up to float rounding). In one
process every helper is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jvp

try:  # functorch's jvp imports this on first use; its one-off JIT set-up (~0.25 s) belongs to start-up
    import torch._decomp.decompositions_for_jvp  # noqa: F401
except ImportError:  # pragma: no cover - a private module; only the timing depends on it
    pass

from unlearn_cli.influence.criteria import Criterion, Objective
from unlearn_cli.ops import dist
from unlearn_cli.ops.progress import Counter, Progress

Params = dict[str, torch.Tensor]


@dataclass
class FunctionalModel:
    """A module seen as f(params, x): the trainable parameters apart from buffers.

    The module is kept in eval mode so BatchNorm uses its running statistics:
    the influence of a record must not depend on which batch it sits in.
    """

    module: nn.Module
    params: Params
    buffers: Params

    @classmethod
    def of(cls, module: nn.Module) -> "FunctionalModel":
        module.eval()
        params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
        buffers = {k: v.detach() for k, v in module.named_buffers()}
        return cls(module, params, buffers)

    def __call__(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, self.buffers), (x,))

    @property
    def names(self) -> list[str]:
        return list(self.params)

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def flat(self, tree: Params | None = None) -> torch.Tensor:
        tree = self.params if tree is None else tree
        return torch.cat([tree[k].reshape(-1) for k in self.params])

    def unflat(self, vector: torch.Tensor) -> Params:
        out, offset = {}, 0
        for name, p in self.params.items():
            out[name] = vector[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        return out

    def shifted(self, step: torch.Tensor) -> Params:
        """theta + step, as a params dict."""
        return {k: p + s for (k, p), s in zip(self.params.items(), self.unflat(step).values())}

    def moved(self, step: torch.Tensor) -> "FunctionalModel":
        """The same function at theta + step."""
        return FunctionalModel(self.module, self.shifted(step), self.buffers)


def chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def psi(
    fmodel: FunctionalModel,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    v: torch.Tensor,
    chunk: int = 2048,
    progress: Progress | None = None,
) -> torch.Tensor:
    """psi_i = grad L_t(x_i)^T v for every record, by forward-mode AD (one pass; ``psi``: records done)."""
    n = len(y)
    x, y = dist.shard(x), dist.shard(y)
    tangent = fmodel.unflat(v.to(x.device))
    out = []
    tick = Counter(progress, "psi", len(y))
    for sl in chunks(len(y), chunk):
        xb, yb = x[sl], y[sl]

        def losses(params: Params) -> torch.Tensor:
            return objective.per_record(fmodel(params, xb), yb)

        _, dots = jvp(losses, (fmodel.params,), (tangent,))
        out.append(dots.detach())
        tick(sl.stop - sl.start)
    local = torch.cat(out) if out else torch.empty(0, dtype=v.dtype, device=v.device)
    return dist.gather_rows(local, n)


def weighted_grad(
    fmodel: FunctionalModel,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    chunk: int = 4096,
) -> torch.Tensor:
    """sum_i w_i grad L_t(x_i): one backward pass of sum_i w_i L_t(x_i) (chunked)."""
    x, y, weights = dist.shard(x), dist.shard(y), dist.shard(weights)
    params = {k: p.detach().requires_grad_(True) for k, p in fmodel.params.items()}
    total = torch.zeros(fmodel.size, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    for sl in chunks(len(y), chunk):
        loss = (weights[sl] * objective.per_record(fmodel(params, x[sl]), y[sl])).sum()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        total += torch.cat([
            (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params.values())
        ])
    return dist.all_reduce_sum(total)


def criterion_grad(
    fmodel: FunctionalModel, criterion: Criterion, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096
) -> tuple[float, torch.Tensor]:
    """C(theta) and grad C(theta) over a set of records.

    Decomposable criteria (a mean over records) are accumulated chunk by chunk, each chunk's graph freed
    before the next, so memory does not grow with the records; non-decomposable ones (ECE) need every
    logit at once, which is only the logits (N x classes).
    """
    params = {k: p.detach().requires_grad_(True) for k, p in fmodel.params.items()}
    names = list(params)

    def flat(value: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(value, [params[k] for k in names], allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(params[k])).reshape(-1)
                          for g, k in zip(grads, names)])

    if not getattr(criterion, "decomposable", False) or (len(y) <= chunk and not dist.active()):
        logits = torch.cat([fmodel(params, x[sl]) for sl in chunks(len(y), chunk)])
        value = criterion.value(logits, y)
        return float(value.detach()), flat(value)
    n = len(y)
    x, y = dist.shard(x), dist.shard(y)
    grad = torch.zeros(fmodel.size + 1, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    for sl in chunks(len(y), chunk):
        share = (sl.stop - sl.start) / n   # each block's share of the whole set: the blocks sum to the mean
        value = criterion.value(fmodel(params, x[sl]), y[sl]) * share
        grad[-1] += value.detach()
        grad[:-1] += flat(value)
    dist.all_reduce_sum(grad)   # value and gradient in one all-reduce
    return float(grad[-1]), grad[:-1]


@torch.no_grad()
def criterion_value(
    fmodel: FunctionalModel, criterion: Criterion, params: Params, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096
) -> float:
    """C at given parameters: forward passes only (under torchrun each rank's block of logits, gathered)."""
    split = dist.active() and len(y) >= dist.world()   # every rank holds at least one row to split
    xs = dist.shard(x) if split else x
    logits = torch.cat([fmodel(params, xs[sl]) for sl in chunks(len(xs), chunk)])
    if split:
        logits = dist.gather_rows(logits, len(y))
    return float(criterion.value(logits, y))


def per_record_grads(fmodel: FunctionalModel, objective: Objective, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, P) matrix of per-record gradients, by vmap(grad). For tests and tiny models only."""
    from torch.func import grad, vmap

    def one(params: Params, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return objective.per_record(fmodel(params, xi[None]), yi[None]).sum()

    grads = vmap(grad(one), in_dims=(None, 0, 0))(fmodel.params, x, y)
    return torch.cat([grads[k].reshape(len(y), -1) for k in fmodel.params], 1)


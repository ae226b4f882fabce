"""Data-parallel steps of the one training loop under ``torchrun`` (``ops.dist``).

Every rank walks the same batch schedule (same global batch, same seed) and
holds the same weights; each computes the loss of its contiguous part of the
batch (``dist.shard``), summed and divided by the *global* batch size, so the
gradients all-reduced over the ranks are exactly the gradient of the batch's
mean cross-entropy: the optimizer step is the one-process step up to the order
of float additions (rounding, ~1e-7 relative per step). One flat all-reduce per
step carries every gradient, which parameters have one, and the loss. This is
DistributedDataParallel's arithmetic without its hooks: DDP averages equal
per-rank batches, and the last batch of an epoch is not split evenly.

A step is replicated instead (every rank computes the whole batch, no
communication, bit-identical to one process) when splitting the batch would
change the result: a custom ``loss_fn`` (it sees the whole batch's positions),
BatchNorm (batch statistics) or dropout (its random masks).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from unlearn_cli.ops import dist

#: Modules whose output for one record depends on the rest of the batch, or on the random stream.
BATCH_COUPLED = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def data_parallel(model: nn.Module, loss_fn: Callable | None) -> bool:
    """Whether this run splits its batches over the ranks (same answer on every rank)."""
    if not dist.active() or loss_fn is not None:
        return False
    return not any(isinstance(m, BATCH_COUPLED) for m in model.modules())


def _params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def parallel_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, positions: np.ndarray,
                  opt: torch.optim.Optimizer) -> float:
    """One optimizer step on the global batch ``positions``, this rank computing its part; the batch loss."""
    local = dist.shard(positions)
    dist.count("train_records", len(local))
    params = _params(opt)
    opt.zero_grad(set_to_none=True)
    device = params[0].device if params else x.device
    loss_value = torch.zeros(1, device=device)
    if len(local):
        idx = torch.from_numpy(local).to(x.device)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx], reduction="sum") / len(positions)
        loss.backward()
        loss_value = loss.detach().reshape(1).to(device)
    has = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=device)
    flat = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params]
                     + [has, loss_value.to(has.dtype)])
    dist.all_reduce_sum(flat)
    tail = flat[-1 - len(params):].tolist()  # one device sync: which parameters have a gradient, the loss
    offset = 0
    for i, p in enumerate(params):
        size = p.numel()
        p.grad = flat[offset: offset + size].view_as(p).clone() if tail[i] > 0 else None
        offset += size
    opt.step()
    return tail[-1]


def same_weights(model: nn.Module) -> None:
    """Rank 0's weights (and buffers) on every rank: they agree already; this makes it certain."""
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, 0)


def split_sizes(n: int) -> list[int]:
    """Records per rank of a global batch (or a data set) of ``n`` rows: for reports."""
    return dist.part_sizes(n)


def describe(model: nn.Module, loss_fn: Any = None) -> str:
    """How a run on ``model`` uses the ranks, for a report."""
    if not dist.active():
        return "single process"
    return "data-parallel" if data_parallel(model, loss_fn) else "replicated (batch-coupled model or custom loss)"


def spread(jobs: list[int], run: Callable[[int], list[dict[str, Any]]], count: Callable[[int], int],
           arch: dict[str, Any], *, on_done: Callable[[], None] = lambda: None) -> dict[int, list[dict[str, Any]]]:
    """``run(job)`` for every job: one process runs them all; under torchrun each rank runs the jobs
    ``dist.owner`` gives it, alone (``dist.independent``), and every state is then broadcast from its
    owner, so every rank ends with every job's ``count(job)`` states, the bits its owner computed.
    Constituents are isolated and seeded per shard, so the result is bit-identical to one process.
    """
    done: dict[int, list[dict[str, Any]]] = {}
    for k, job in enumerate(jobs):
        if dist.mine(k):
            with dist.independent():
                done[job] = run(job)
            dist.count("jobs", 1)
            on_done()
    if not dist.active():
        return done
    template = _template(arch)
    for k, job in enumerate(jobs):
        states = done[job] if dist.mine(k) else [{n: t.clone() for n, t in template.items()} for _ in range(count(job))]
        done[job] = [dist.broadcast_state(st, dist.owner(k)) for st in states]
    return done


def _template(arch: dict[str, Any]) -> dict[str, Any]:
    """A state dict with the architecture's keys, shapes and dtypes (the global random stream untouched)."""
    from unlearn_cli.models.registry import build

    with torch.random.fork_rng(devices=[]):
        return {k: v.detach().to("cpu").clone() for k, v in build(arch).state_dict().items()}

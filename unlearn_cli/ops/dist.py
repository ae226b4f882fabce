"""Several processes of one run under ``torchrun``: torch.distributed, and nothing of our own.

``torchrun --nproc-per-node N unlearn ...`` starts N copies of the command
with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set; ``start`` (called by
``cli.output.command_run``) joins them into one process group: gloo for CPU
tensors, and NCCL for CUDA tensors when a GPU is present (each process then
uses GPU ``LOCAL_RANK``). A plain process (no ``WORLD_SIZE`` or
``WORLD_SIZE=1``) never touches torch.distributed, and every helper below is
then the identity: ``rank() == 0``, ``world() == 1``, ``shard(rows) is rows``.
This module imports torch lazily, so importing it costs nothing.

What the helpers guarantee:

* ``shard(rows)`` gives this rank's part of a row array: contiguous blocks as
  ``numpy.array_split`` cuts them (rank 0 the first block), or every
  ``world()``-th row from ``rank()`` on with ``strided=True`` (for work whose
  cost grows along the array). The parts of all ranks, concatenated in rank
  order (contiguous), are the input.
* ``all_reduce_sum`` / ``broadcast`` / ``broadcast_state`` / ``agree`` are
  collectives: every rank must call them in the same order. Code that runs on
  one rank only (a SISA constituent) runs inside ``independent()``, where the
  helpers are the identity again.
* A failed collective (a peer died, or ``UNLEARN_DIST_TIMEOUT`` seconds, default
  1800, passed) raises ``PeerFailed`` (exit 1). ``agree`` is the phase boundary
  before anything is published: a rank that failed outside a collective votes
  so, and every rank raises; a rank that died closes its connections, and the
  others' next collective fails. Either way rank 0 publishes nothing.
* ``is_main()`` is rank 0: it alone takes locks and writes files (the gates are
  in ``ops.atomic``, ``ops.locking``, ``ops.ledger`` and the publishers).

``UNLEARN_TEST_FAIL_RANK=<rank>:<point>`` makes ``fault_point(<point>)`` raise
on that rank (tests; like ``ops.faults.crash_point``).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator

from unlearn_cli.errors import UnlearnError

TIMEOUT_ENV = "UNLEARN_DIST_TIMEOUT"
FAULT_ENV = "UNLEARN_TEST_FAIL_RANK"
#: Collectives wait this long for a slow peer: a SISA rank may train a whole constituent while another waits.
DEFAULT_TIMEOUT_S = 1800.0

_state = {"started": False, "local": 0, "reduce_s": 0.0, "reduce_calls": 0}
#: What each rank did, for the report's ``distributed`` entry (``summary``): rows and jobs per kind of work.
WORK_KINDS = ("train_records", "predict_records", "curvature_records", "jobs")
_work = dict.fromkeys(WORK_KINDS, 0)


class PeerFailed(UnlearnError):
    """Another process of this torchrun job failed (or a collective timed out): nothing is published."""

    exit_code = 1


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _initialized() -> bool:
    if not launched():
        return False
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized()


def start() -> bool:
    """Join the process group when launched by torchrun; True when this call created it.

    Idempotent: a group made by the caller (a Python driver) is used as it is and left to it.
    """
    if not launched() or _initialized():
        return False
    import datetime

    import torch
    import torch.distributed as tdist

    if not tdist.is_available():
        raise UnlearnError("WORLD_SIZE is set (torchrun) but this torch build has no torch.distributed")
    backend = "gloo"
    if torch.cuda.is_available():
        # NCCL needs a GPU per process; with fewer GPUs than local processes gloo carries CUDA tensors too.
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        torch.cuda.set_device(local % gpus)
        if gpus >= int(os.environ.get("LOCAL_WORLD_SIZE", "1")):
            backend = "cpu:gloo,cuda:nccl"
    timeout = datetime.timedelta(seconds=_timeout_s())
    try:
        tdist.init_process_group(backend=backend, timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise PeerFailed(f"could not join the torchrun process group ({type(exc).__name__})") from None
    _state["started"] = True
    return True


def stop() -> None:
    """Leave the process group this module started (after the command, failed or not)."""
    if not _state["started"]:
        return
    import torch.distributed as tdist

    _state["started"] = False
    with contextlib.suppress(Exception):
        tdist.destroy_process_group()


def _timeout_s() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def rank() -> int:
    """This process's rank in the job (0 in a plain process)."""
    if not _initialized():
        return 0
    import torch.distributed as tdist

    return tdist.get_rank()


def world() -> int:
    """How many processes run this job (1 in a plain process)."""
    if not _initialized():
        return 1
    import torch.distributed as tdist

    return tdist.get_world_size()


def is_main() -> bool:
    """Rank 0: the one process that takes locks, writes files and prints."""
    return rank() == 0


def active() -> bool:
    """Whether collectives do anything here: several processes, and not inside ``independent()``."""
    return _state["local"] == 0 and world() > 1


@contextlib.contextmanager
def independent() -> Iterator[None]:
    """Work this rank does alone (a SISA constituent): every helper is the identity inside."""
    _state["local"] += 1
    try:
        yield
    finally:
        _state["local"] -= 1


def shard(rows: Any, strided: bool = False) -> Any:
    """This rank's part of ``rows`` (see the module doc); ``rows`` itself when not ``active()``."""
    if not active():
        return rows
    if strided:
        return rows[rank():: world()]
    bounds = shard_bounds(len(rows))
    return rows[bounds[rank()]: bounds[rank() + 1]]


def shard_bounds(n: int) -> list[int]:
    """The ``world() + 1`` cut points of ``shard``'s contiguous split of ``n`` rows (numpy.array_split's)."""
    parts = world() if active() else 1
    size, extra = divmod(n, parts)
    return [r * size + min(r, extra) for r in range(parts + 1)]


def owner(job: int) -> int:
    """The rank that runs independent job number ``job`` (round-robin); 0 when not ``active()``."""
    return job % world() if active() else 0


def mine(job: int) -> bool:
    """Whether this process runs independent job number ``job`` (every job when not ``active()``)."""
    return not active() or owner(job) == rank()


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    except RuntimeError as exc:  # gloo/NCCL: a peer closed its connection, or the timeout passed
        cause = " ".join(str(exc).split())[-100:]  # gloo/NCCL's own words: a closed peer, a timeout, a bad call
        raise PeerFailed(f"another process of this torchrun job failed during {what} "
                         f"({type(exc).__name__}: {cause}); nothing was written") from None
    finally:
        _state["reduce_s"] += time.perf_counter() - t0
        _state["reduce_calls"] += 1


def all_reduce_sum(tensor: Any) -> Any:
    """Sum ``tensor`` over all ranks, in place; every rank gets the same bits. Returns it."""
    if active():
        import torch.distributed as tdist

        with _collective("all-reduce"):
            tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: Any, src: int = 0) -> Any:
    """Overwrite ``tensor`` with rank ``src``'s, in place. Returns it."""
    if active():
        import torch.distributed as tdist

        with _collective("broadcast"):
            tdist.broadcast(tensor, src=src)
    return tensor


def broadcast_state(state: dict[str, Any], src: int = 0) -> dict[str, Any]:
    """Rank ``src``'s tensors into ``state`` (same keys and shapes on every rank), in sorted key order."""
    if active():
        for key in sorted(state):
            value = state[key].contiguous()
            state[key] = broadcast(value, src)
    return state


def gather_rows(local: Any, n: int, strided: bool = False) -> Any:
    """All ``n`` rows on every rank from each rank's ``shard`` of them (``local``: this rank's rows, any
    trailing shape): one all-reduce of a zero-padded tensor, exact (each entry is one rank's value plus zeros).
    """
    if not active():
        return local
    import torch

    full = torch.zeros((n, *local.shape[1:]), dtype=local.dtype, device=local.device)
    if strided:
        full[rank():: world()] = local
    else:
        bounds = shard_bounds(n)
        full[bounds[rank()]: bounds[rank() + 1]] = local
    return all_reduce_sum(full)


def everyone(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank: one decision all ranks share (a cache hit, say)."""
    if not active():
        return bool(flag)
    import torch

    return int(all_reduce_sum(torch.tensor([1 if flag else 0]))[0]) == world()


def barrier() -> None:
    """Wait for every rank (a failed peer raises ``PeerFailed``)."""
    if active():
        import torch.distributed as tdist

        with _collective("barrier"):
            tdist.barrier()


def agree(failed: bool = False, what: str = "the run") -> None:
    """Phase boundary: raise ``PeerFailed`` on every rank when any rank failed (or died) before it."""
    if not active():
        return
    import torch

    votes = all_reduce_sum(torch.tensor([1.0 if failed else 0.0]))
    if float(votes[0]) > 0 and not failed:
        raise PeerFailed(f"another process of this torchrun job failed before {what}; nothing was written")


@contextlib.contextmanager
def all_or_none(what: str) -> Iterator[None]:
    """Run a block that has no collectives inside; afterwards every rank fails if any rank did."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(PeerFailed):
            agree(True, what)
        raise
    agree(False, what)


def fault_point(name: str) -> None:
    """Test hook: raise here on the rank ``UNLEARN_TEST_FAIL_RANK=<rank>:<name>`` names."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted and wanted == f"{rank()}:{name}":
        raise RuntimeError(f"injected fault at '{name}' on rank {rank()}")


def count(kind: str, n: int) -> None:
    """Record ``n`` units of work of ``kind`` (one of ``WORK_KINDS``) done by this rank."""
    _work[kind] += int(n)


def summary() -> dict[str, Any] | None:
    """Every rank's work and collective time since the last summary (a collective itself: all ranks
    call it); None in one process.

    ``collective_s`` includes waiting for slower ranks, so it measures imbalance as well as transfer.
    """
    if not active():
        return None
    import torch

    own = [float(_work[k]) for k in WORK_KINDS] + [_state["reduce_s"], float(_state["reduce_calls"])]
    table = torch.zeros(world(), len(own), dtype=torch.float64)
    table[rank()] = torch.tensor(own, dtype=torch.float64)
    all_reduce_sum(table)
    _work.update(dict.fromkeys(WORK_KINDS, 0))
    _state.update(reduce_s=0.0, reduce_calls=0)
    names = [*WORK_KINDS, "collective_s", "collectives"]
    ranks = [{"rank": r, **{n: (round(v, 6) if n == "collective_s" else int(v)) for n, v in zip(names, row)}}
             for r, row in enumerate(table.tolist())]
    import torch.distributed as tdist

    return {"world": world(), "backend": str(tdist.get_backend()), "ranks": ranks}


def part_sizes(n: int) -> list[int]:
    """Rows per rank of ``shard``'s contiguous split of ``n`` rows (for reports)."""
    bounds = shard_bounds(n)
    return [int(b - a) for a, b in zip(bounds[:-1], bounds[1:])]

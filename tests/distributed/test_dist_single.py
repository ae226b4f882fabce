"""``ops.dist`` in a plain process: every helper is the identity, and nothing touches torch.distributed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn_cli.ops import dist


@pytest.fixture(autouse=True)
def plain(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", dist.FAULT_ENV):
        monkeypatch.delenv(name, raising=False)


def test_a_plain_process_is_rank_zero_of_one():
    assert not dist.launched() and not dist.start()
    assert (dist.rank(), dist.world(), dist.is_main(), dist.active()) == (0, 1, True, False)
    assert dist.summary() is None


def test_helpers_are_the_identity():
    rows = np.arange(10)
    assert dist.shard(rows) is rows and dist.shard(rows, strided=True) is rows
    t = torch.arange(4.0)
    assert dist.all_reduce_sum(t) is t and torch.equal(t, torch.arange(4.0))
    assert dist.broadcast(t) is t and dist.gather_rows(t, 4) is t
    assert dist.everyone(True) and not dist.everyone(False)
    assert all(dist.mine(k) for k in range(5)) and dist.owner(3) == 0
    dist.agree()
    dist.barrier()
    with dist.all_or_none("nothing"):
        pass


def test_contiguous_cut_points_are_array_splits():
    assert dist.shard_bounds(10) == [0, 10]
    assert dist.part_sizes(7) == [7]


def test_world_size_one_is_a_plain_process(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not dist.launched() and not dist.start()


def test_fault_point_fires_on_the_named_rank_only(monkeypatch):
    dist.fault_point("train")
    monkeypatch.setenv(dist.FAULT_ENV, "1:train")
    dist.fault_point("train")  # rank 0 here
    monkeypatch.setenv(dist.FAULT_ENV, "0:train")
    with pytest.raises(RuntimeError, match="injected fault at 'train' on rank 0"):
        dist.fault_point("train")
    dist.fault_point("publish")


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10])
def test_shards_of_three_ranks_cover_the_rows_once(monkeypatch, n):
    rows = np.arange(100, 100 + n)
    monkeypatch.setattr(dist, "world", lambda: 3)
    parts, strided = [], []
    for r in range(3):
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        parts.append(dist.shard(rows))
        strided.append(dist.shard(rows, strided=True))
        assert dist.mine(r) and not dist.mine(r + 1)
    assert [list(p) for p in parts] == [list(p) for p in np.array_split(rows, 3)]
    assert sorted(np.concatenate(strided).tolist()) == rows.tolist()
    assert dist.part_sizes(n) == [len(p) for p in parts]
    with dist.independent():
        assert dist.shard(rows) is rows and not dist.active()

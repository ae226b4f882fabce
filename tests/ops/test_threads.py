"""The intra-op thread choice (ops/threads.py): free CPUs from affinity and load, UNLEARN_THREADS parsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearn_cli.errors import BadInput
from unlearn_cli.ops import threads
from unlearn_cli.training import loop
from unlearn_cli.training.loop import pick_threads


@pytest.mark.parametrize("usable, busy, ceiling, expected", [
    (2, 0.0, None, 2),     # quiet 2-core machine: both cores
    (2, 1.0, None, 1),     # one competing process: the free core only
    (2, 0.4, None, 2),     # a light background load rounds away
    (2, 0.6, None, 1),
    (2, 14.0, None, 1),    # overloaded: never fewer than one
    (8, 3.0, None, 5),
    (8, 0.0, 4, 4),        # never above torch's own default
    (1, 0.0, None, 1),
    (4, -2.0, None, 4),    # a negative estimate is no load
])
def test_the_choice_is_the_free_usable_cpus(usable, busy, ceiling, expected):
    assert threads.choose_threads(usable, busy, ceiling) == expected


@pytest.mark.parametrize("usable, busy, expected", [
    (2, 0.0, 2), (2, 1.0, 2), (2, 2.0, 2),   # passive waits: up to two runnable tasks per CPU
    (2, 3.0, 1), (2, 14.0, 1), (8, 12.0, 4),
])
def test_passive_waits_allow_sharing_a_cpu(usable, busy, expected):
    assert threads.choose_threads(usable, busy, passive=True) == expected


def test_usable_cpus_follow_the_affinity_mask_and_a_cgroup_quota(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    monkeypatch.setattr(threads, "_quota_cpus", lambda: None)
    assert threads.usable_cpus() == 3
    monkeypatch.setattr(threads, "_quota_cpus", lambda: 1.5)  # cpu.max "150000 100000"
    assert threads.usable_cpus() == 2


def test_busy_elsewhere_takes_the_larger_signal_less_our_own_share(monkeypatch, tmp_path):
    loadavg = tmp_path / "loadavg"
    real_path = threads.Path
    monkeypatch.setattr(threads, "Path", lambda p: real_path(loadavg) if p == "/proc/loadavg" else real_path(p))
    monkeypatch.setattr(threads, "_own_running_threads", lambda: 1)
    monkeypatch.setattr(threads, "_own_load", lambda: 0.5)
    loadavg.write_text("1.50 0.90 0.40 1/120 4242\n")   # lagging average high, nobody runnable now
    assert threads.busy_elsewhere() == pytest.approx(1.0)
    assert threads.busy_elsewhere(passive=True) == pytest.approx(0.0)  # passive waits: the smaller signal
    loadavg.write_text("0.10 0.05 0.01 3/120 4242\n")   # a job just started: two others runnable
    assert threads.busy_elsewhere() == pytest.approx(2.0)
    assert threads.busy_elsewhere(passive=True) == pytest.approx(0.0)
    loadavg.write_text("3.50 2.0 1.0 4/120 4242\n")     # steady load: both signals agree
    assert threads.busy_elsewhere(passive=True) == pytest.approx(3.0)
    loadavg.write_text("0.20 0.05 0.01 1/120 4242\n")   # only us
    assert threads.busy_elsewhere() == pytest.approx(0.0)


@pytest.mark.parametrize("text, expected", [
    (None, None), ("", None), ("auto", None), (" AUTO ", None), ("1", 1), ("3", 3), (" 2 ", 2), ("1024", 1024),
])
def test_unlearn_threads_values(text, expected):
    assert threads.parse_threads(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", "1e3", "1025", "2\n3"])
def test_a_bad_unlearn_threads_is_one_line_bad_input(text):
    with pytest.raises(BadInput) as info:
        threads.parse_threads(text)
    message = str(info.value)
    assert message.startswith("UNLEARN_THREADS must be 'auto' or a whole number") and "\n" not in message


def test_pick_threads_sets_torch_from_the_choice(monkeypatch):
    before = torch.get_num_threads()
    large = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(400, 300))   # 120k parameters
    small = nn.Linear(4, 2)
    small_conv = nn.Sequential(nn.Conv2d(1, 8, 5), nn.Flatten())
    try:
        monkeypatch.delenv(threads.ENV, raising=False)
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # spinning waits: only the free CPUs
        monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
        monkeypatch.setattr(threads, "busy_elsewhere", lambda passive=False: 1.0)
        pick_threads(large)
        assert torch.get_num_threads() == 1          # the other core is taken
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # passive waits: sharing a CPU with one job pays
        pick_threads(large)
        assert torch.get_num_threads() == min(2, loop._DEFAULT_THREADS)  # torch's default at most
        monkeypatch.setattr(threads, "busy_elsewhere", lambda passive=False: 0.0)
        pick_threads(large)
        assert torch.get_num_threads() == min(2, loop._DEFAULT_THREADS)
        pick_threads(small)
        assert torch.get_num_threads() == 1          # small model: one thread whatever is free
        pick_threads(small_conv)
        assert torch.get_num_threads() == 1          # convolutional or not
        monkeypatch.setenv(threads.ENV, "2")
        pick_threads(small)
        assert torch.get_num_threads() == 2          # the override wins
        monkeypatch.setenv(threads.ENV, "lots")
        with pytest.raises(BadInput):
            pick_threads(large)
    finally:
        torch.set_num_threads(before)


def test_a_bad_unlearn_threads_fails_the_command_with_exit_2(tmp_path, blobs_manifest):
    from tests.conftest import run_here

    proc = run_here("train", blobs_manifest, "--epochs", "1", "--out", tmp_path / "m.safetensors",
                    env={threads.ENV: "many"})
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert "UNLEARN_THREADS must be 'auto' or a whole number" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_passive_waits_are_preferred_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.prefer_passive_waits()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.prefer_passive_waits()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"

"""How many intra-op threads torch may use: the CPUs this process may run on, less those others keep busy.

torch's default is one OpenMP thread per core, whether or not the cores are
free. When another process holds a core, the worker threads of every parallel
region wait for the one that was preempted, spinning while they wait: on a
2-core machine one competing CPU-bound process made a mnist-5k retrain take
19.2 s with torch's 2 threads against 8.8 s with one (6.0 s quiet), and two
competitors made it 80 s. So the count is chosen per training or influence
pass from what is free *now*:

    usable = CPUs in this process's affinity mask (os.sched_getaffinity),
             capped by a cgroup CPU quota (containers)
    busy   = 1-minute load average - this process's own share of it, and
             tasks runnable this instant - this process's running threads:
             the larger of the two with spinning waits, the smaller with passive ones
    free   = usable - busy              (spinning waits)
           = usable - (busy - usable)   (passive waits: up to two runnable tasks per CPU)
    threads = clamp(round(free), 1, usable), and at most torch's own default

With spinning waits a thread too many on a busy core costs a multiple of the
run (5-25x measured), so the pessimistic signal is taken. With passive waits
(the ``unlearn`` command's default) a thread on a shared core only sleeps
while it waits and earns its fair share of the CPU, so extra threads pay until
the machine is oversubscribed. Small models (``small=True``: < 100k
parameters, convolutional or not) get one thread whatever is free: splitting
a 64x32 matmul or an 8-channel convolution costs more than it saves (the
mnist-5k cnn, 12k parameters, retrained in 4.7-5.4 s on one thread against
6.2-7.3 s on two passive ones, quiet, and 4.8-5.4 s against 8.4-9.1 s beside
one busy process).

``UNLEARN_THREADS`` overrides the choice: ``auto`` (the default; empty is the
same) or a whole number 1..1024, used as is. Anything else is refused with a
one-line :class:`~unlearn_cli.errors.BadInput` (exit 2) naming the variable,
before the pass starts: a typo must not silently fall back to a guess.

``prefer_passive_waits()`` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user
set it) so idle OpenMP workers sleep instead of spinning; OpenMP reads it once
when torch is first imported, so the CLI calls it before anything imports torch.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from unlearn_cli.errors import BadInput

ENV = "UNLEARN_THREADS"
#: The most threads UNLEARN_THREADS may ask for: far above any CPU count, low enough to refuse a typo.
MAX_THREADS = 1024
#: Seconds over which the kernel's 1-minute load average decays (its time constant).
_LOAD_WINDOW = 60.0
_IMPORTED = time.monotonic()


def parse_threads(text: str | None) -> int | None:
    """UNLEARN_THREADS's value: None for ``auto`` (or unset/empty), else the count; BadInput otherwise."""
    value = (text or "").strip().lower()
    if value in ("", "auto"):
        return None
    if value.isdigit() and 1 <= int(value) <= MAX_THREADS:
        return int(value)
    shown = (text or "")[:20].encode("unicode_escape").decode("ascii")
    raise BadInput(f"{ENV} must be 'auto' or a whole number 1..{MAX_THREADS}, got '{shown}'")


def _quota_cpus() -> float | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max`` "quota period"), or None without one."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _quota_cpus()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _own_running_threads() -> int:
    running = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            running += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(1, running)


def _process_age() -> float:
    """Seconds since this process started (/proc/self/stat's start time), or since this module was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 1e-3)
    except (OSError, ValueError, IndexError):
        return max(time.monotonic() - _IMPORTED, 1e-3)


def _own_load() -> float:
    """This process's share of the 1-minute load average: its mean CPUs in use, weighted by how
    much of the averaging window it has lived (a process that just started has added ~nothing)."""
    cpu = sum(os.times()[:2])
    alive = _process_age()
    return min(cpu / alive, float(usable_cpus())) * (1.0 - math.exp(-alive / _LOAD_WINDOW))


def busy_elsewhere(passive: bool = False) -> float:
    """CPUs other processes keep busy now; 0 if unknown. Spinning waits take the larger of the lagging
    and the instant signal (a thread too many is costly); passive ones the smaller (load that has just
    ended or a flicker of runnable tasks must not halve the threads)."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        load1, runnable = float(fields[0]), int(fields[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, os.getloadavg()[0] - _own_load())
        except (AttributeError, OSError):
            return 0.0
    lagging, instant = load1 - _own_load(), float(runnable - _own_running_threads())
    return max(0.0, min(lagging, instant) if passive else max(lagging, instant))


def choose_threads(usable: int, busy: float, ceiling: int | None = None, passive: bool = False) -> int:
    """Threads for ``usable`` CPUs of which ``busy`` are taken by others: the free ones, at least 1.

    With passive waits a worker that shares a CPU sleeps while it waits and still earns its fair
    share, so up to two runnable tasks per CPU are allowed: beside one competitor on 2 cores, 2
    passive threads retrained mnist-5k in 7.1 s against 10.4 s with one.
    """
    if passive:
        busy = busy - usable
    free = usable - max(0.0, busy)
    threads = max(1, min(usable, int(math.floor(free + 0.5))))
    return min(threads, ceiling) if ceiling else threads


def passive_waits() -> bool:
    """Whether OpenMP workers sleep while they wait (OMP_WAIT_POLICY=PASSIVE when torch was imported)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def thread_count(small: bool = False, ceiling: int | None = None) -> int:
    """The intra-op thread count for the next pass: UNLEARN_THREADS if set, else 1 for a small dense
    model, else the free usable CPUs (at most ``ceiling``, torch's default)."""
    forced = parse_threads(os.environ.get(ENV))
    if forced is not None:
        return forced
    if small:
        return 1
    passive = passive_waits()
    return choose_threads(usable_cpus(), busy_elsewhere(passive), ceiling, passive)


def prefer_passive_waits() -> None:
    """Idle OpenMP workers sleep instead of spinning (unless OMP_WAIT_POLICY is set); before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


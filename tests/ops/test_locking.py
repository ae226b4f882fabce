"""ops.locking: one holder at a time, the holder's PID in the message, waits, no stale locks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from unlearn_cli.errors import BadInput, LockHeld
from unlearn_cli.ops.locking import hold_locks, lock_path_for


def test_lock_file_holds_the_pid_and_goes_away_after(tmp_path):
    lock = lock_path_for(tmp_path / "model.safetensors")
    assert lock.name == "model.safetensors.lock"
    with hold_locks([lock]):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_second_holder_is_refused_naming_the_pid(tmp_path):
    lock = tmp_path / "x.lock"
    with hold_locks([lock]):
        with pytest.raises(LockHeld) as info:
            with hold_locks([lock], what="model.safetensors"):
                pytest.fail("must not get the lock")
    assert info.value.exit_code == 4
    message = str(info.value)
    assert f"PID {os.getpid()}" in message and "model.safetensors" in message and "--wait" in message


def test_a_waiter_gets_the_lock_when_it_is_released(tmp_path):
    lock = tmp_path / "x.lock"
    held = threading.Event()
    release = threading.Event()

    def holder():
        with hold_locks([lock]):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    t0 = time.monotonic()
    with hold_locks([lock], wait=10):
        waited = time.monotonic() - t0
    thread.join()
    assert 0.3 < waited < 9


def test_wait_runs_out(tmp_path):
    lock = tmp_path / "x.lock"
    with hold_locks([lock]):
        t0 = time.monotonic()
        with pytest.raises(LockHeld, match="after waiting 0.3 s"):
            with hold_locks([lock], wait=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3


def test_a_dead_holder_leaves_no_lock(tmp_path):
    lock = tmp_path / "x.lock"
    code = (f"import os, fcntl; fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'999999'); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert lock.exists()  # the file stays behind after a crash ...
    with hold_locks([lock], wait=0):  # ... but the kernel dropped the lock with the process
        assert lock.read_text().strip() == str(os.getpid())


def test_several_locks_all_or_none(tmp_path):
    a, b = tmp_path / "a.lock", tmp_path / "b.lock"
    with hold_locks([b]):
        with pytest.raises(LockHeld):
            with hold_locks([a, b]):
                pass
        assert not a.exists()  # the one it did get was given back


def test_bad_arguments(tmp_path):
    with pytest.raises(BadInput, match="--wait"):
        with hold_locks([tmp_path / "x.lock"], wait=-1):
            pass
    with pytest.raises(BadInput, match="does not exist"):
        with hold_locks([tmp_path / "missing" / "x.lock"]):
            pass

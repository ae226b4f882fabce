"""Crash points for the crash-safety tests.

``UNLEARN_TEST_KILL_AT=<name>`` makes the process SIGKILL itself when it
reaches ``crash_point(<name>)``, so a test can stop a run exactly between two
durable steps (after the temp checkpoint, after the journal, after the
rename, after the ledger line, between queue moves) instead of hoping a timer
lands there. Unset, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "UNLEARN_TEST_KILL_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

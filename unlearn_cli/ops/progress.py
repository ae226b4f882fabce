"""Progress: how long work reports itself without printing (the CLI draws it).

A ``Progress`` is a callable ``progress(phase, done, total)``: ``phase`` names
what is counted ("epoch", "batch", "attack models", "K-FAC factors", "psi"),
``done`` how many of ``total`` are finished. Whoever does the work reports
``(phase, 0, total)`` before the first unit, so the total is known from the
start, and ``(phase, done, total)`` after each unit; the same phase reported
again from 0 starts over (the next shadow model's epochs). ``None`` means
nobody listens. The command line draws one bar per phase on a terminal
(``cli/output.py``); the library never prints.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int], None]


def silent(phase: str, done: int, total: int) -> None:
    """The progress of nobody listening."""


def within(progress: Progress | None, prefix: str) -> Progress | None:
    """Report a sub-step's phases under ``prefix``: ``epoch`` within ``retrain`` is ``retrain: epoch``."""
    if progress is None:
        return None
    return lambda phase, done, total: progress(f"{prefix}: {phase}", done, total)


class Counter:
    """``tick(k)``: k more units of ``phase`` done; reports ``(phase, 0, total)`` on creation."""

    def __init__(self, progress: Progress | None, phase: str, total: int):
        self.progress, self.phase, self.total, self.done = progress, phase, int(total), 0
        if progress is not None:
            progress(phase, 0, self.total)

    def __call__(self, k: int = 1) -> None:
        self.done += int(k)
        if self.progress is not None:
            self.progress(self.phase, self.done, max(self.total, self.done))

    def finish(self) -> None:
        """All units done (work that may stop early, as CG on convergence)."""
        if self.progress is not None and self.done < self.total:
            self.done = self.total
            self.progress(self.phase, self.done, self.total)

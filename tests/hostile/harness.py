"""One check for every hostile input: refused with exit 2 and one short line, nothing lost.

``refuse(args, inputs)`` runs ``unlearn ARGS`` and asserts the contract of
issue #15 / DESIGN.md: exit code 2, exactly one line on stderr, under 300
characters, no traceback, no raw control character, and every file in
``inputs`` byte-identical afterwards (or still absent).

Most cases run in-process through Typer's test runner (torch is imported
once for the whole module, so a hundred cases cost seconds). Cases that could
hang (FIFOs, devices, alias bombs, non-finite waits) pass ``subprocess=True``:
they run as the real console script under a 5-second timeout, so a hang fails
the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from typer.testing import CliRunner

from conftest import unlearn_cmd
from unlearn_cli.cli.app import app

MAX_LINE = 300
HANG_LIMIT_S = 5.0
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def _snapshot(paths: Iterable[Path]) -> dict[Path, bytes | None]:
    out: dict[Path, bytes | None] = {}
    for p in paths:
        p = Path(p)
        try:
            out[p] = p.read_bytes() if p.is_file() and not p.is_symlink() else (
                os.readlink(p).encode() if p.is_symlink() else None)
        except OSError:
            out[p] = None
    return out


def invoke(args: Sequence[object], *, subprocess_run: bool = False, stdin: bytes | None = None,
           env: dict[str, str] | None = None, cwd: Path | None = None) -> Outcome:
    argv = [str(a) for a in args]
    start = time.perf_counter()
    if subprocess_run:
        full_env = dict(os.environ, COLUMNS="200", **(env or {}))
        try:
            proc = subprocess.run(unlearn_cmd() + argv, capture_output=True, input=stdin, env=full_env,
                                  cwd=cwd, timeout=HANG_LIMIT_S + 10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"unlearn {' '.join(argv)} hung (no answer in {HANG_LIMIT_S + 10:.0f} s)") from None
        return Outcome(proc.returncode, proc.stdout.decode(errors="replace"),
                       proc.stderr.decode(errors="replace"), time.perf_counter() - start)
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner(env=env).invoke(app, argv, input=stdin)
    finally:
        os.chdir(old)
    return Outcome(result.exit_code, result.stdout, result.stderr, time.perf_counter() - start)


def refuse(args: Sequence[object], inputs: Iterable[Path] = (), *, subprocess_run: bool = False,
           code: int = 2, expect: str | None = None, **kwargs) -> Outcome:
    """Run and assert the bad-input contract; ``expect``: a fragment the one line must hold."""
    inputs = list(inputs)
    before = _snapshot(inputs)
    out = invoke(args, subprocess_run=subprocess_run, **kwargs)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    what = f"unlearn {' '.join(map(str, args))}"
    assert out.code == code, f"{what}: exit {out.code}, expected {code}; stderr: {out.stderr[:600]!r}"
    assert "Traceback" not in out.stderr, f"{what}: traceback on stderr"
    assert len(lines) == 1, f"{what}: {len(lines)} stderr lines: {out.stderr[:600]!r}"
    assert len(lines[0]) < MAX_LINE, f"{what}: a {len(lines[0])}-character line: {lines[0][:200]!r}..."
    assert not _CONTROL.search(lines[0]), f"{what}: raw control characters: {lines[0]!r}"
    if expect is not None:
        assert expect in lines[0], f"{what}: {lines[0]!r} does not say {expect!r}"
    if subprocess_run:
        assert out.seconds < HANG_LIMIT_S, f"{what}: took {out.seconds:.1f} s"
    assert _snapshot(inputs) == before, f"{what}: an input file changed"
    return out

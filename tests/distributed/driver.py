"""Run several ``unlearn`` commands in one process (or one torchrun job), as the console script does.

    python driver.py COMMANDS.json            # one process: the reference
    torchrun --standalone --nproc-per-node 2 driver.py COMMANDS.json

COMMANDS.json is a list of argument lists (``["train", "manifest.yaml", "--out", ...]``),
run in order in the current folder through ``unlearn_cli.cli.app`` (the console script's
app); every one must exit 0. An entry ``{"argv": [...], "fault": "1:publish"}`` runs only
under torchrun, with ``UNLEARN_TEST_FAIL_RANK`` set, and must fail on every rank (a
failure the ranks agree on at a phase boundary leaves the group usable). The process
group is joined once for all of them (``ops.dist.start``; each command then uses it).

On every rank but 0 an audit hook (PEP 578) records each attempt to create,
write, rename or remove a file under the current folder; such a rank exits 3
naming them: the proof that rank 0 alone writes. Each rank's
``ops.dist.summary`` of its work goes to stderr as one JSON line (rank 0).
"""

from __future__ import annotations

import json
import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit_writes(root: str, seen: list[str]) -> None:
    def inside(path) -> bool:
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(root + os.sep)
        except (TypeError, ValueError):
            return False

    def hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) >= 3 and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1], args[2] or 0
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & WRITE_FLAGS)
            if writes and inside(args[0]):
                seen.append(f"open {args[0]} {mode or flags}")
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.truncate", "os.link", "os.symlink"):
            if args and inside(args[0]):
                seen.append(f"{event} {args[0]}")

    sys.addaudithook(hook)


def main() -> int:
    from unlearn_cli.cli.app import app
    from unlearn_cli.ops import dist

    commands = json.loads(open(sys.argv[1], encoding="utf-8").read())
    dist.start()
    seen: list[str] = []
    if not dist.is_main():
        _audit_writes(os.path.abspath(os.getcwd()), seen)
    for entry in commands:
        argv, fault = (entry["argv"], entry["fault"]) if isinstance(entry, dict) else (entry, None)
        if fault is not None and dist.world() == 1:
            continue
        os.environ.pop(dist.FAULT_ENV, None)
        if fault is not None:
            os.environ[dist.FAULT_ENV] = fault
        try:
            app(args=argv, prog_name="unlearn")
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        if (code != 0) != (fault is not None):
            print(f"driver: rank {dist.rank()}: {argv[0]} exited {code}", file=sys.stderr)
            return 1
    os.environ.pop(dist.FAULT_ENV, None)
    if seen:
        print(f"driver: rank {dist.rank()} wrote files: {seen[:5]}", file=sys.stderr)
        return 3
    dist.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

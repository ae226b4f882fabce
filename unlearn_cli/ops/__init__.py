"""Durable files and run bookkeeping, below the model code (no torch; numpy only lazily, for seeds).

atomic.py    the one place that writes files: temp file, fsync, verify, rename
paths.py     output-path safety: no output is an input or another output, none replaced without --force
ledger.py    the append-only deletion ledger and its write-ahead journal
locking.py   one run at a time per output, ledger and queue (flock lock files)
queue.py     the request queue folder: waiting files, done/, failed/
digests.py   sha256 of files and IDs, seeds derived from a seed and a role
clock.py     UTC timestamps as written in checkpoints, reports and the ledger
progress.py  the progress callback (phase, done, total) that long work reports and the CLI draws
faults.py    crash points for the crash-safety tests (UNLEARN_TEST_KILL_AT)
inputs.py    opening input files: regular files only, never blocking, size limits per kind
yaml_input.py  YAML input files: bounded, aliases refused, errors never quoting the file
"""

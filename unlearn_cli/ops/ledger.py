"""The deletion ledger: an append-only JSON-lines audit trail, one line per forget run (and per calibrate output).

Each line is one JSON object (see ``LEDGER_FORMAT`` and README "Running
unattended"). It names requests by file name and sha256 and removed records by
a digest of each ID (``ops.digests.id_digest``), never by the raw ID: with a
ledger key, HMAC-SHA256 in ``removed_id_hmac`` beside the key's ``key_id``;
without one, plain SHA-256 in ``removed_id_sha256`` (``key_id`` null).
Digests under different keys cannot be compared: ``Removed.require_comparable``
refuses a run whose key differs from the one earlier removals were recorded under.

Durability rules, so that a crash at any instant leaves a ledger a reader can use:

* A line is written with ONE ``os.write`` of the whole line on an ``O_APPEND``
  descriptor, then fsynced. A failed or short write is truncated back off.
* A reader skips a torn last line (a crash mid-write on some file systems) and
  any other line that is not a ledger object, with a warning.
* A writer that finds the file not ending in a newline writes one first, so a
  torn line never swallows the next good one.

Idempotency reads the ledger: the IDs removed on the way to a checkpoint are
the ID digests of the ``ok`` lines whose output is that checkpoint or one of
its ancestors (the ``parent_sha256`` of its lineage entries).

The journal (``<ledger>.pending``) is the write-ahead half of a run: the line
a run is about to append, written before the new checkpoint is renamed into
place. If the run dies after the rename but before its ledger line, the next
run holding the lock finds the journal, sees the published checkpoint and
appends the line (marked ``recovered``); if the checkpoint was never
published the journal is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.atomic import fsync_dir
from unlearn_cli.ops.digests import LedgerKey, id_digest, key_id_of

#: Version of the line layout, written in every line as ``"ledger"``.
LEDGER_FORMAT = 1
DEFAULT_NAME = "unlearn-ledger.jsonl"


def default_ledger(output: str | os.PathLike) -> Path:
    """``unlearn-ledger.jsonl`` in the output checkpoint's folder."""
    return Path(output).parent / DEFAULT_NAME


def journal_path(ledger: str | os.PathLike) -> Path:
    ledger = Path(ledger)
    return ledger.with_name(ledger.name + ".pending")


@dataclass
class Ledger:
    """The parsed lines of a ledger file (damaged ones skipped)."""

    path: Path
    lines: list[dict[str, Any]] = field(default_factory=list)
    damaged: int = 0

    @property
    def run_ids(self) -> set[str]:
        return {str(line.get("run_id")) for line in self.lines}

    def ok_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("status") == "ok"]

    def removed_on_the_way_to(self, checkpoint_sha: str, lineage: list[dict[str, Any]]) -> "Removed":
        """ID digests removed by ledgered runs whose output is this checkpoint or an ancestor."""
        chain = {checkpoint_sha} | {str(e.get("parent_sha256")) for e in lineage if e.get("parent_sha256")}
        found = Removed()
        for line in self.ok_lines():
            if _sha(line, "output") in chain:
                key_id, digests = line_digests(line)
                found.by_key.setdefault(key_id, set()).update(digests)
        return found

    def runs_removing(self, digests: dict[str | None, str]) -> tuple[list[dict[str, Any]], int]:
        """(``ok`` lines whose removed digests hold the ID, lines under another key that cannot tell).

        ``digests`` maps a key id (None: plain SHA-256) to the ID's digest under it.
        """
        runs, other_keys = [], 0
        for line in self.ok_lines():
            key_id, removed = line_digests(line)
            if key_id not in digests:
                other_keys += bool(removed)
            elif digests[key_id] in removed:
                runs.append(line)
        return runs, other_keys

    def unrecorded_steps(self, checkpoint_sha: str, lineage: list[dict[str, Any]]) -> int:
        """Lineage entries (removals) of a checkpoint that no ledger line records."""
        parents = [str(e.get("parent_sha256")) for e in lineage]
        children = parents[1:] + [checkpoint_sha]
        steps = {(_sha(line, "input"), _sha(line, "output")) for line in self.ok_lines()}
        return sum((p, c) not in steps for p, c in zip(parents, children))


@dataclass
class Removed:
    """ID digests removed on the way to a checkpoint, by the key id they were recorded under (None: plain)."""

    by_key: dict[str | None, set[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.by_key.values())

    def require_comparable(self, key: LedgerKey | None, where: str) -> None:
        """Refuse when earlier removals were recorded under a key this run cannot reproduce."""
        foreign = sorted(k for k, v in self.by_key.items() if v and k is not None and k != key_id_of(key))
        if not foreign:
            return
        mine = f"this run's key id is {key.key_id}" if key is not None else "this run has no ledger key"
        raise BadInput(f"earlier removals on the way to {where} were recorded in the ledger under ledger key id "
                       f"{foreign[0]}, and {mine}: their digests cannot be compared, so already-removed records "
                       "cannot be recognised; pass the same --ledger-key")

    def holds(self, record_id: str, key: LedgerKey | None) -> bool:
        """Was this ID removed (under this run's key, or plainly recorded before keys were used)?"""
        plain = self.by_key.get(None)
        if plain and id_digest(record_id) in plain:
            return True
        keyed = self.by_key.get(key_id_of(key)) if key is not None else None
        return bool(keyed) and id_digest(record_id, key) in keyed


def line_digests(line: dict[str, Any]) -> tuple[str | None, set[str]]:
    """(key id, removed ID digests) of a ledger line: keyed ``removed_id_hmac`` or plain ``removed_id_sha256``."""
    if line.get("removed_id_hmac") is not None:
        key_id = line.get("key_id")
        return (str(key_id) if key_id else "unknown"), {str(d) for d in line.get("removed_id_hmac") or []}
    return None, {str(d) for d in line.get("removed_id_sha256") or []}


def _sha(line: dict[str, Any], key: str) -> str | None:
    value = line.get(key)
    return value.get("sha256") if isinstance(value, dict) else None


def _is_ledger_line(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("ledger") == LEDGER_FORMAT and isinstance(obj.get("status"), str)


def read_ledger(path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> Ledger:
    """Parse a ledger; a missing file is an empty ledger. Never raises for a torn last line."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{path}: ledger path is a directory")
    if path.exists() and not path.is_file():
        raise BadInput(f"{path}: the ledger is not a regular file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Ledger(path)
    except IsADirectoryError:
        raise BadInput(f"{path}: ledger path is a directory") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ledger ({exc.strerror or exc})") from None
    ledger = Ledger(path)
    chunks = raw.split(b"\n")
    torn_tail = bool(chunks[-1])  # bytes after the last newline: an unfinished line
    for number, chunk in enumerate(chunks, start=1):
        if not chunk.strip():
            continue
        try:
            obj = json.loads(chunk.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = None
        if _is_ledger_line(obj):
            ledger.lines.append(obj)
        else:
            ledger.damaged += 1
            if warn is not None:
                where = "its unfinished last line" if (torn_tail and number == len(chunks)) else f"line {number}"
                warn(f"ledger {path}: ignored {where} (not a complete ledger entry; a crash mid-write?)")
    if ledger.damaged and not ledger.lines and raw.count(b"\n") > 1:
        raise BadInput(f"{path}: not an unlearn ledger (no line is a ledger entry); choose another --ledger")
    return ledger


def encode_line(entry: dict[str, Any]) -> bytes:
    """One ledger line: compact JSON, ASCII only (so no byte of it is ever a stray newline)."""
    return (json.dumps(entry, sort_keys=False, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def append_line(path: str | os.PathLike, entry: dict[str, Any]) -> None:
    """Append one entry durably: a single write of the whole line, then fsync (rank 0 alone under torchrun)."""
    from unlearn_cli.ops.dist import is_main

    if not is_main():
        return
    path = Path(path)
    data = encode_line(entry)
    created = not path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise BadInput(f"{path}: ledger directory '{path.parent}' does not exist") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot open ledger ({exc.strerror or exc})") from None
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # end the torn line so it cannot swallow this one
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, "short write to ledger (disk full?)")
            os.fsync(fd)
        except OSError:
            # Leave the ledger as it was: no half line for the next writer to inherit.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


# -- the write-ahead journal ------------------------------------------------

def write_journal(ledger: str | os.PathLike, entry: dict[str, Any], output: str | os.PathLike) -> Path:
    """Record the line a run is about to append, before it publishes ``output``."""
    from unlearn_cli.ops.atomic import write_text

    path = journal_path(ledger)
    write_text(path, json.dumps({"output": os.path.abspath(output), "entry": entry}) + "\n")
    return path


def clear_journal(ledger: str | os.PathLike) -> None:
    path = journal_path(ledger)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_dir(path.parent)


def recover_journal(ledger: str | os.PathLike, sha256_of: Callable[[Path], str | None],
                    warn: Callable[[str], None]) -> dict[str, Any] | None:
    """Finish or drop a run that died between publishing and its ledger line.

    Call with the ledger's lock held. Returns the recovered entry, if any.
    """
    path = journal_path(ledger)
    if not path.exists():
        return None
    try:
        pending = json.loads(path.read_text(encoding="utf-8"))
        entry = pending["entry"]
        output = Path(pending["output"])
        expected = entry["output"]["sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        warn(f"{path}: dropped an unreadable journal of an interrupted run")
        clear_journal(ledger)
        return None
    recovered = None
    if sha256_of(output) == expected:
        if str(entry.get("run_id")) not in read_ledger(ledger).run_ids:
            entry = {**entry, "recovered": True}
            append_line(ledger, entry)
            recovered = entry
            warn(f"recorded in the ledger an interrupted run ({entry.get('run_id')}) that had already "
                 f"published {output}")
    else:
        warn(f"an earlier run ({entry.get('run_id')}) was interrupted before publishing {output}; "
             "its requests are processed again")
    clear_journal(ledger)
    return recovered


def removed_digests(ids: Iterable[str], key: LedgerKey | None = None) -> list[str]:
    """Sorted digest of each ID (keyed when ``key``): what the ledger records instead of the IDs."""
    return sorted(id_digest(i, key) for i in ids)


def digest_fields(ids: Iterable[str], key: LedgerKey | None) -> dict[str, Any]:
    """A ledger line's per-ID digests: ``removed_id_hmac`` + ``key_id`` with a key, else ``removed_id_sha256``."""
    if key is None:
        return {"key_id": None, "removed_id_sha256": removed_digests(ids)}
    return {"key_id": key.key_id, "removed_id_hmac": removed_digests(ids, key)}

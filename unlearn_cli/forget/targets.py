"""Where a run writes and what it starts from: output and ledger paths, their locks, leftovers of a killed run.

Every problem with a path is found here, before anything is locked or written.
``forget`` and ``calibrate`` both plan their ``Targets`` here and both publish
under ``locked_targets``: the locks on the output and the ledger held, the
temp files and journal an interrupted run left settled, the ledger read.
"""

from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from unlearn_cli.errors import BadInput
from unlearn_cli.ops import queue as queue_ops
from unlearn_cli.ops.digests import sha256_or_none
from unlearn_cli.ops.dist import all_or_none, is_main
from unlearn_cli.ops.faults import crash_point
from unlearn_cli.ops.ledger import Ledger, default_ledger, journal_path, read_ledger, recover_journal
from unlearn_cli.ops.locking import check_wait, hold_locks, lock_path_for
from unlearn_cli.ops.paths import folder_of, same_file, sidecars_of
from unlearn_cli.ops.yaml_input import load_yaml


@dataclass
class Targets:
    out: Path
    ledger: Path
    queue: Path | None = None

    def locks(self) -> list[Path]:
        found = [lock_path_for(self.out), lock_path_for(self.ledger)]
        if self.queue is not None:
            found.append(self.queue / queue_ops.LOCK_NAME)
        return found


def default_output(checkpoint: Path, role: str = "unlearned") -> Path:
    """``<stem>.<role>.safetensors`` beside the input: forget's ``unlearned``, calibrate's ``calibrated``."""
    name = checkpoint.name
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else checkpoint.stem
    return checkpoint.with_name(f"{stem}.{role}.safetensors")


def plan_targets(checkpoint: Path, out: Path | None, ledger: Path | None, queue: Path | None,
                 in_place: bool) -> Targets:
    """Where a forget run writes: ``out`` (or the default, or the input with ``in_place``), the ledger, the queue."""
    checkpoint = Path(checkpoint)
    if in_place:
        if out is not None and Path(out).resolve() != checkpoint.resolve():
            raise BadInput("--in-place replaces the input checkpoint; it cannot be combined with --out")
        target = checkpoint
    else:
        target = Path(out) if out is not None else default_output(checkpoint)
        if target.resolve() == checkpoint.resolve():
            raise BadInput(f"{target}: refusing to overwrite the input checkpoint (choose another --out, "
                           "or pass --in-place)")
    if not target.parent.is_dir():
        raise BadInput(f"{target}: output directory '{target.parent}' does not exist")
    if target.is_dir():
        raise BadInput(f"{target}: is a directory, not a checkpoint file")
    ledger_path = plan_ledger(ledger, target, checkpoint)
    checked_queue = queue_ops.check_queue(queue) if queue is not None else None
    return Targets(target, ledger_path, checked_queue)


def plan_calibrate_targets(checkpoint: Path, out: Path | None, ledger: Path | None, wait: float) -> Targets:
    """Where calibrate writes: ``out`` or ``<stem>.calibrated.safetensors``, never the input; the ledger.

    ``wait`` (for the locks taken when publishing) is checked here too: before the work, not after it.
    """
    check_wait(wait)
    checkpoint = Path(checkpoint)
    target = Path(out) if out is not None else default_output(checkpoint, "calibrated")
    if target.resolve() == checkpoint.resolve():
        raise BadInput(f"{target}: refusing to overwrite the input checkpoint (choose another --out)")
    if not (target.parent if str(target.parent) else Path(".")).is_dir():
        raise BadInput(f"--out {target}: directory '{target.parent}' does not exist")
    if target.is_dir():
        raise BadInput(f"{target}: is a directory, not a file")
    return Targets(target, plan_ledger(ledger, target, checkpoint))


def plan_ledger(ledger: Path | None, out: Path, checkpoint: Path) -> Path:
    """``--ledger`` or ``unlearn-ledger.jsonl`` beside the output; never a folder or a checkpoint."""
    path = Path(ledger) if ledger is not None else default_ledger(out)
    if not path.parent.is_dir():
        raise BadInput(f"--ledger {path}: directory '{path.parent}' does not exist")
    if path.is_dir():
        raise BadInput(f"--ledger {path}: is a directory, not a file")
    label = "--ledger" if ledger is not None else "the ledger"
    if same_file(path, checkpoint):
        raise BadInput(f"{label} {path} is the input checkpoint; choose another file")
    if same_file(path, out):
        raise BadInput(f"{label} {path} is also the output checkpoint; choose another file")
    return path


@contextlib.contextmanager
def locked_targets(targets: Targets, wait: float, warn: Callable[[str], None]) -> Iterator[Ledger]:
    """Hold the targets' locks; settle what a killed run left; yield the ledger as it now reads.

    Under torchrun rank 0 alone locks and settles; every rank reads the ledger once it has (``ops.dist``).
    """
    with contextlib.ExitStack() as held:
        with all_or_none("taking the locks"):
            held.enter_context(hold_locks(targets.locks(), wait, what=str(targets.out), warn=warn))
            if is_main():
                crash_point("locked")
                remove_stale_temps(targets.out, journal_path(targets.ledger))
                if targets.queue is not None:
                    queue_ops.remove_stale_temps(targets.queue)
                recover_journal(targets.ledger, sha256_or_none, warn)
        yield read_ledger(targets.ledger, warn)


def remove_stale_temps(*targets: Path) -> None:
    """Temp files of a run that was killed (we hold the lock: nobody else writes these names)."""
    for target in targets:
        for name in glob.glob(os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.*.tmp")):
            with contextlib.suppress(OSError):
                os.unlink(name)


def choose_base(checkpoint: Path, in_place: bool, targets: Targets, warn: Callable[[str], None]) -> Path:
    """The checkpoint to start from.

    With ``--queue`` and a separate output that already descends from the
    input (an earlier run of this queue made it), the run continues from that
    output: starting again from the input would drop the removals it holds.
    """
    checkpoint = Path(checkpoint)
    out = targets.out
    if in_place or targets.queue is None or not out.exists():
        return checkpoint
    if descends_from(out, checkpoint):
        warn(f"continuing from {out}: it already holds earlier removals from {checkpoint.name}")
        return out
    return checkpoint


def descends_from(out: Path, checkpoint: Path) -> bool:
    """Whether ``out``'s lineage has ``checkpoint`` (by sha256) as a parent: an earlier run made it from there."""
    from unlearn_cli.models.checkpoint import read_header_meta

    try:
        header = read_header_meta(out)
    except BadInput as exc:
        raise BadInput(f"the existing output is unreadable ({exc}); move it away, or run the queue "
                       "with --in-place on the checkpoint that holds the removals") from None
    input_sha = sha256_or_none(checkpoint)
    lineage = header["meta"].get("lineage") or []
    return input_sha is not None and isinstance(lineage, list) and any(
        isinstance(e, dict) and e.get("parent_sha256") == input_sha for e in lineage)


def may_replace_output(checkpoint: Path, targets: Targets, in_place: bool, force: bool) -> bool:
    """Whether forget may replace ``targets.out`` when it exists (DESIGN.md: never without --force).

    ``--in-place`` means replace; ``--force`` allows it; and a ``--queue`` run
    replaces an output that descends from the input without either, because it
    continues from it (``choose_base``): the new checkpoint keeps every removal
    the old one held, so nothing is lost (the documented cron mode).
    """
    if in_place or force or not os.path.lexists(targets.out):
        return True
    return targets.queue is not None and targets.out.is_file() and descends_from(targets.out, Path(checkpoint))


def checkpoint_inputs(checkpoint: Path, data: Path | None) -> list[tuple[str, Path]]:
    """The files a run on ``checkpoint`` reads, for the output-path checks (``ops.paths``): the
    checkpoint, its sidecars, its manifest (``--data`` or the recorded one) and that manifest's data file.

    Read cheaply and leniently: a file that cannot be read here is reported by the real load later.
    """
    from unlearn_cli.models.checkpoint import read_header_meta

    found: list[tuple[str, Path]] = [("input checkpoint", Path(checkpoint))]
    manifest = Path(data) if data is not None else None
    try:
        header = read_header_meta(checkpoint)
    except Exception:  # noqa: BLE001 - load_checkpoint reports it, with its own message, before any work
        return found + manifest_inputs(manifest)
    found += sidecars_of(checkpoint, header.get("sha256"))
    recorded = (header.get("meta") or {}).get("dataset")
    if manifest is None and isinstance(recorded, dict) and isinstance(recorded.get("manifest"), str):
        manifest = folder_of(checkpoint) / recorded["manifest"]
    return found + manifest_inputs(manifest)


def manifest_inputs(manifest: Path | None) -> list[tuple[str, Path]]:
    """The manifest and the data file it names (from the YAML alone: no data is loaded)."""
    if manifest is None:
        return []
    found: list[tuple[str, Path]] = [("manifest", Path(manifest))]
    try:
        raw = load_yaml(manifest, "manifest")
    except Exception:  # noqa: BLE001 - load_manifest reports it before any work
        return found
    data = raw.get("data") if isinstance(raw, dict) else None
    rel = data.get("path") if isinstance(data, dict) else None
    if isinstance(rel, str) and rel.strip():
        found.append(("data file", folder_of(manifest) / rel))
    return found

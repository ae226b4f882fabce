"""Publishing a new checkpoint: child metadata with its lineage entry, the verified atomic write, the ledger line.

``publish_checkpoint`` is the one path by which ``forget`` and ``calibrate``
put a checkpoint on disk, in this order, each step durable before the next:
sidecars, the checkpoint to a temp file (fsynced, loaded back, finite), the
journal, the rename, the ledger line. A run killed at any instant leaves
every previous file valid; the next run completes or discards what it left
(see ``ops.ledger``). Call it with the targets' locks held
(``forget.targets.locked_targets``).

The rest is forget's own: its ledger entries, finishing a run that changes no
checkpoint, and moving queue files out once everything is durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Callable

from unlearn_cli import __version__
from unlearn_cli.errors import BadInput, one_line
from unlearn_cli.forget.job import RunFacts
from unlearn_cli.forget.targets import Targets
from unlearn_cli.methods.base import Outcome
from unlearn_cli.ops import dist
from unlearn_cli.ops import queue as queue_ops
from unlearn_cli.ops.clock import utc_now
from unlearn_cli.ops.digests import key_id_of, set_digest, sha256_or_none
from unlearn_cli.ops.faults import crash_point
from unlearn_cli.ops.ledger import (
    LEDGER_FORMAT, append_line, clear_journal, digest_fields, journal_path, write_journal,
)
from unlearn_cli.options import as_dict


def lineage_entry(method: str, config: dict[str, Any], count: int, removed_ids_digest: str | None,
                  request_sha256: str | None, parent_sha256: str, key_id: str | None = None) -> dict[str, Any]:
    """One step in a checkpoint's ``lineage``: what made it from its parent (no raw IDs).

    ``removed_ids_digest`` is HMAC-SHA256 under the ledger key whose id is ``key_id``, or plain SHA-256 (null).
    """
    return {
        "method": method,
        "config": config,
        "count": count,
        "removed_ids_digest": removed_ids_digest,
        "key_id": key_id,
        "request_sha256": request_sha256,
        "parent_sha256": parent_sha256,
        "time": utc_now(),
        "tool_version": __version__,
    }


def child_meta(parent: Any, manifest: Path, out: Path, entry: dict[str, Any],
               updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """The new checkpoint's metadata: the parent's (metrics aside), ``updates``, one more lineage entry."""
    from unlearn_cli.models.checkpoint import relative_manifest

    meta = {k: v for k, v in parent.meta.items() if k not in ("metrics",)}
    meta.update(updates or {})
    if isinstance(meta.get("dataset"), dict) and meta["dataset"].get("manifest") is not None:
        # The manifest path is stored relative to the checkpoint: re-anchor it at the output's folder.
        meta["dataset"] = {**meta["dataset"], "manifest": relative_manifest(manifest, out)}
    meta["lineage"] = list(parent.meta.get("lineage", [])) + [entry]
    return meta


def ledger_line(run_id: str, command: str, status: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry: who wrote it, when and where, then the command's own ``fields``."""
    return {
        "ledger": LEDGER_FORMAT,
        "run_id": run_id,
        "time": utc_now(),
        "tool_version": __version__,
        "command": command,
        "status": status,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **fields,
    }


def ledger_output(ledger: Path, run_id: str) -> dict[str, Any]:
    """The ledger as a report output, after this run's line."""
    return {"path": str(ledger), "sha256": sha256_or_none(ledger), "run_id": run_id}


def publish_checkpoint(targets: Targets, state: dict[str, Any], meta: dict[str, Any],
                       entry_for: Callable[[dict[str, Any]], dict[str, Any]],
                       sidecars: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sidecars, checkpoint (temp, verified), journal, rename, ledger line: in that order.

    ``entry_for`` builds the ledger entry from the published output (path and
    sha256). Returns the report outputs (checkpoint, sidecars, ledger) and the entry.
    Under torchrun every rank first agrees that none failed (``ops.dist.agree``);
    then rank 0 alone writes, and the others return the same report fields.
    """
    from unlearn_cli.models.checkpoint import checkpoint_bytes, verify_file
    from unlearn_cli.models.sidecar import save_sidecar, sidecar_path
    from unlearn_cli.ops.atomic import write_bytes

    out, ledger = targets.out, targets.ledger
    data = checkpoint_bytes(state, meta)
    digest = hashlib.sha256(data).hexdigest()
    outputs: dict[str, Any] = {"checkpoint": {"path": str(out), "sha256": digest}}
    entry = entry_for({"path": os.path.abspath(out), "sha256": digest})
    with dist.all_or_none("publishing"):
        dist.fault_point("publish")
    if not dist.is_main():
        return {**outputs, "ledger": {"path": str(ledger), "run_id": entry["run_id"]}}, entry
    new_sidecars: list[Path] = []

    def verify_then_journal(tmp: Path) -> None:
        verify_file(tmp)               # loads back, every weight finite
        crash_point("verified")
        write_journal(ledger, entry, out)
        crash_point("journaled")

    try:
        # Sidecars are named after the new checkpoint's sha256, so they can go first:
        # until the checkpoint is published nothing refers to them.
        for name, tensors in (sidecars or {}).items():
            path = sidecar_path(out, digest, name)
            if not path.exists():
                new_sidecars.append(path)
            outputs[f"sidecar.{name}"] = {"path": str(path),
                                          "sha256": save_sidecar(path, tensors, {"checkpoint": digest})}
        write_bytes(out, data, verify=verify_then_journal)
    except BaseException:
        clear_journal(ledger)
        for path in new_sidecars:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    crash_point("published")
    try:
        append_line(ledger, entry)
    except OSError as exc:
        raise BadInput(f"{ledger}: cannot append the ledger line ({exc.strerror or exc}); {out} was published "
                       f"and its line is kept in {journal_path(ledger)} for the next run to append") from None
    crash_point("ledgered")
    clear_journal(ledger)
    outputs["ledger"] = ledger_output(ledger, entry["run_id"])
    return outputs, entry


# -- forget's entries ------------------------------------------------------------

def _short(split_metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("n", "accuracy", "loss")
    return {split: {k: v for k, v in values.items() if k in keep} for split, values in split_metrics.items()}


def forget_ledger_entry(run: RunFacts, status: str, output: dict[str, Any],
                        metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return ledger_line(run.run_id, "forget", status, {
        "method": run.job.method,
        "config": as_dict(run.method_config),
        "seed": run.seed,
        "requests": [f.as_dict() for f in run.requests.files],
        "rejected": [{"file": item.name, "sha256": item.sha256, "reason": one_line(reason)}
                     for item, reason in run.requests.rejected],
        "ids": {
            "requested": run.requests.requested,
            "removed": len(run.new),
            "already_removed": run.already,
            "unknown_skipped": len(run.skipped),
        },
        **digest_fields(run.new, run.key),
        "removed_ids_digest": set_digest(run.new, run.key) if run.new else None,
        "input": {"path": os.path.abspath(run.base), "sha256": run.ckpt.sha256},
        "output": output,
        "metrics": metrics or {},
    })


def forget_child_meta(run: RunFacts, outcome: Outcome) -> dict[str, Any]:
    """The forgotten checkpoint's metadata: the method's updates and one lineage entry for this removal.

    SISA's removed train positions are sealed as (keyed) digests of their IDs: positions plus the
    data set would name the records.
    """
    from unlearn_cli.models.ensemble import seal_removed

    entry = lineage_entry(run.job.method, as_dict(run.method_config), len(run.new), set_digest(run.new, run.key),
                          run.requests.request.sha256, run.ckpt.sha256, key_id_of(run.key))
    meta = child_meta(run.ckpt, run.dataset.manifest_path, run.targets.out, entry, outcome.meta_updates)
    if isinstance(meta.get("sisa"), dict):
        meta["sisa"] = seal_removed(meta["sisa"], list(run.dataset.train_ids), run.key)
    return meta


def publish_forget(run: RunFacts, outcome: Outcome, meta: dict[str, Any], before: dict[str, Any],
                   after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Publish the method's weights with a ledger line holding before/after metrics."""
    return publish_checkpoint(
        run.targets, outcome.state, meta,
        lambda output: forget_ledger_entry(run, "ok", output, {"before": _short(before), "after": _short(after)}),
        outcome.sidecars)


def record_without_change(run: RunFacts) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Nothing new to remove: a ledger line saying so (status, outputs, entry); no checkpoint changes."""
    status = "failed" if (run.requests.request is None and run.requests.rejected) else "nothing-to-do"
    unchanged = {"path": os.path.abspath(run.base), "sha256": run.ckpt.sha256}
    entry = forget_ledger_entry(run, status, unchanged)
    ledger = run.targets.ledger
    dist.agree(what="the ledger line")  # under torchrun rank 0 appends (ops.ledger.append_line)
    try:
        append_line(ledger, entry)
    except OSError as exc:
        raise BadInput(f"{ledger}: cannot append the ledger line ({exc.strerror or exc})") from None
    crash_point("ledgered")
    return status, {"ledger": ledger_output(ledger, run.run_id)}, entry


def settle_queue(run: RunFacts, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """Move queue files out only now that the checkpoint and ledger line are durable."""
    directory = run.targets.queue
    if directory is None:
        return None
    if not dist.is_main():  # rank 0 alone moves files under torchrun
        return {"dir": str(directory), "done": [], "failed": [], "left": []}
    done, failed, left = [], [], []
    for item in run.requests.accepted:
        moved = queue_ops.settle(directory, item, queue_ops.DONE)
        crash_point("moved-one")
        if moved is None:
            left.append(item.name)
            warn(f"{item.name} changed while it was processed; left in the queue for the next run")
        else:
            done.append(str(moved))
    for item, reason in run.requests.rejected:
        moved = queue_ops.settle(directory, item, queue_ops.FAILED, one_line(reason))
        if moved is None:
            left.append(item.name)
        else:
            failed.append({"file": str(moved), "reason": one_line(reason)})
    return {"dir": str(directory), "done": done, "failed": failed, "left": left}

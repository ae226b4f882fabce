"""The forget workflow: requests -> method plugin -> verified, atomically published checkpoint + ledger line.

Commands call ``forget``; it holds the order of operations that every method
shares, so methods only compute new weights:

1. cheap checks before anything is locked or written: method and options,
   output and ledger folders, request files (or the queue folder);
2. the locks on the output, the ledger and the queue (``ops.locking``); under
   them: leftovers of an interrupted run are finished or removed
   (``ops.ledger`` journal, stale temp files), the ledger is read;
3. the checkpoint and its data set; the requested IDs are checked against the
   train split; IDs the ledger shows were already removed on the way to this
   checkpoint are skipped (and kept out of the retain rows);
4. before metrics, the method, non-finite and the method's own check, after
   metrics;
5. publish, in this order, each step durable before the next: sidecars, the
   checkpoint to a temp file (fsynced, loaded back, finite), the journal, the
   rename, the ledger line, then request files leave the queue.

A run killed at any instant leaves every previous file valid; the next run
completes or discards what the killed one left (see ``ops.ledger``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from unlearn_cli import __version__
from unlearn_cli.data.ids import Request, check_known, id_set_digest, parse_ids, read_ids
from unlearn_cli.ops.digests import id_digest
from unlearn_cli.errors import BadInput, GateFailed
from unlearn_cli.methods.base import Outcome, config_dict, parse_config, parse_sets
from unlearn_cli.methods.base import Request as MethodRequest
from unlearn_cli.methods.registry import get as get_method
from unlearn_cli.ops import queue as queue_ops
from unlearn_cli.ops.faults import crash_point
from unlearn_cli.ops.ledger import (
    LEDGER_FORMAT, append_line, clear_journal, default_ledger, journal_path, read_ledger, recover_journal,
    write_journal,
)
from unlearn_cli.ops.locking import hold_locks, lock_path_for

HOW_TO_TRAIN = {
    "sisa": "train one with: unlearn train MANIFEST --sisa-shards 5 --sisa-slices 4 --out CKPT",
    "update-log": "train one with: unlearn train MANIFEST --track-updates --out CKPT",
}


@dataclass
class ForgetJob:
    checkpoint: Path
    requests: list[str]
    method: str
    data: Path | None = None
    out: Path | None = None
    config_file: Path | None = None
    sets: list[str] = field(default_factory=list)
    ignore_unknown: bool = False
    device: Any = "cpu"
    seed: int | None = None
    queue: Path | None = None        # take every *.txt in this folder; move them to done/ or failed/
    ledger: Path | None = None       # default: unlearn-ledger.jsonl beside the output
    in_place: bool = False           # replace the input checkpoint (atomically)
    wait: float = 0.0                # seconds to wait for another run's lock before exit 4


def default_output(checkpoint: Path) -> Path:
    name = checkpoint.name
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else checkpoint.stem
    return checkpoint.with_name(f"{stem}.unlearned.safetensors")


def load_config_values(config_file: Path | None, sets: list[str]) -> dict[str, Any]:
    """Method options from --config FILE.yaml then --set key=value (later wins)."""
    import yaml

    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInput(f"{config_file}: config file not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise BadInput(f"{config_file}: cannot read config ({str(exc).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise BadInput(f"{config_file}: config must be a mapping of option: value")
        values.update(loaded)
    values.update(parse_sets(sets))
    return values


def check_requirement(method: Any, ckpt: Any) -> None:
    need = method.requires
    if need == "plain":
        return
    if need == "sisa" and ckpt.kind != "sisa":
        raise BadInput(f"method '{method.name}' needs a SISA checkpoint; {ckpt.path.name} is '{ckpt.kind}'; "
                       f"{HOW_TO_TRAIN['sisa']}")
    if need == "update-log" and not ckpt.meta.get("update_log"):
        raise BadInput(f"method '{method.name}' needs a checkpoint trained with --track-updates; "
                       f"{ckpt.path.name} has no update log; {HOW_TO_TRAIN['update-log']}")


def split_metrics(predict: Callable, dataset: Any, rows: dict[str, Any], device: Any) -> dict[str, Any]:
    from unlearn_cli.models.predict import evaluate_rows

    return {name: evaluate_rows(predict, dataset, idx, device) for name, idx in rows.items()}


# -- requests ----------------------------------------------------------------

@dataclass
class RequestFile:
    """One request file of a run: what the ledger says about it."""

    file: str
    sha256: str | None
    ids: int = 0


@dataclass
class Requests:
    """The requests of one run, merged, plus the queue files refused."""

    request: Request | None                  # merged; None when no file was accepted
    files: list[RequestFile]
    rejected: list[tuple[Any, str]] = field(default_factory=list)   # (QueuedFile, reason)
    accepted: list[Any] = field(default_factory=list)               # QueuedFile, queue mode only


def merge_requests(parts: Sequence[Request]) -> Request:
    """Several parsed request files as one (same rules as data.ids.read_requests)."""
    seen: dict[str, None] = {}
    repeated: dict[str, None] = {}
    for part in parts:
        for record_id in part.duplicates:
            repeated.setdefault(record_id, None)
        for record_id in part.ids:
            if record_id in seen:
                repeated.setdefault(record_id, None)
            seen.setdefault(record_id, None)
    if len(parts) == 1:
        sha = parts[0].sha256
    else:
        sha = hashlib.sha256("".join(p.sha256 for p in parts).encode("ascii")).hexdigest()
    return Request(ids=tuple(seen), duplicates=tuple(repeated), source=", ".join(p.source for p in parts),
                   sha256=sha)


def read_request_files(paths: Sequence[str]) -> Requests:
    """Positional request files: any bad one fails the whole run (nothing written)."""
    if not paths:
        raise BadInput("no request files given (pass IDS files, '-' for stdin, or --queue DIR)")
    if sum(os.fsdecode(p) == "-" for p in paths) > 1:
        raise BadInput("'-' (standard input) can be given only once")
    parts = [read_ids(p) for p in paths]
    files = [RequestFile(p.source, p.sha256, len(p.ids)) for p in parts]
    return Requests(merge_requests(parts), files)


def screen_queue(items: Sequence[Any], dataset: Any, ignore_unknown: bool) -> Requests:
    """Queue files one by one: a bad file is refused on its own, the others go ahead."""
    train, test = set(dataset.train_ids), set(dataset.test_ids)
    parts, files, accepted, rejected = [], [], [], []
    for item in items:
        if item.raw is None:
            rejected.append((item, f"{item.path}: cannot read the request file"))
            continue
        try:
            part = parse_ids(item.raw, str(item.path))
            check_known(part.ids, train, test, ignore_unknown)
        except BadInput as exc:
            rejected.append((item, str(exc)))
            continue
        parts.append(part)
        files.append(RequestFile(item.name, item.sha256, len(part.ids)))
        accepted.append(item)
    return Requests(merge_requests(parts) if parts else None, files, rejected, accepted)


# -- paths, locks, leftovers ----------------------------------------------------

@dataclass
class Targets:
    out: Path
    ledger: Path
    queue: Path | None

    def locks(self) -> list[Path]:
        found = [lock_path_for(self.out), lock_path_for(self.ledger)]
        if self.queue is not None:
            found.append(self.queue / queue_ops.LOCK_NAME)
        return found


def plan_targets(job: ForgetJob) -> Targets:
    """Where the run writes; every problem here is found before anything is written."""
    checkpoint = Path(job.checkpoint)
    if job.in_place:
        if job.out is not None and Path(job.out).resolve() != checkpoint.resolve():
            raise BadInput("--in-place replaces the input checkpoint; it cannot be combined with --out")
        out = checkpoint
    else:
        out = Path(job.out) if job.out is not None else default_output(checkpoint)
        if out.resolve() == checkpoint.resolve():
            raise BadInput(f"{out}: refusing to overwrite the input checkpoint (choose another --out, "
                           "or pass --in-place)")
    if not out.parent.is_dir():
        raise BadInput(f"{out}: output directory '{out.parent}' does not exist")
    if out.is_dir():
        raise BadInput(f"{out}: is a directory, not a checkpoint file")
    ledger = Path(job.ledger) if job.ledger is not None else default_ledger(out)
    if not ledger.parent.is_dir():
        raise BadInput(f"--ledger {ledger}: directory '{ledger.parent}' does not exist")
    if ledger.is_dir():
        raise BadInput(f"--ledger {ledger}: is a directory, not a file")
    if ledger.resolve() in (out.resolve(), checkpoint.resolve()):
        raise BadInput(f"--ledger {ledger}: is the checkpoint itself; choose another file")
    queue = queue_ops.check_queue(job.queue) if job.queue is not None else None
    return Targets(out, ledger, queue)


def _remove_stale_temps(*targets: Path) -> None:
    """Temp files of a run that was killed (we hold the lock: nobody else writes these names)."""
    for target in targets:
        for name in glob.glob(os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.*.tmp")):
            with contextlib.suppress(OSError):
                os.unlink(name)


def _sha_or_none(path: Path) -> str | None:
    from unlearn_cli.ops.digests import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def choose_base(job: ForgetJob, targets: Targets, warn: Callable[[str], None]) -> Path:
    """The checkpoint to start from.

    With ``--queue`` and a separate output that already descends from the
    input (an earlier run of this queue made it), the run continues from that
    output: starting again from the input would drop the removals it holds.
    """
    from unlearn_cli.models.checkpoint import read_header_meta

    checkpoint = Path(job.checkpoint)
    out = targets.out
    if job.in_place or targets.queue is None or not out.exists():
        return checkpoint
    try:
        header = read_header_meta(out)
    except BadInput as exc:
        raise BadInput(f"the existing output is unreadable ({exc}); move it away, or run the queue "
                       "with --in-place on the checkpoint that holds the removals") from None
    input_sha = _sha_or_none(checkpoint)
    lineage = header["meta"].get("lineage") or []
    if input_sha is not None and any(e.get("parent_sha256") == input_sha for e in lineage):
        warn(f"continuing from {out}: it already holds earlier removals from {checkpoint.name}")
        return out
    return checkpoint


# -- the workflow ---------------------------------------------------------------

def forget(job: ForgetJob, *, warn: Callable[[str], None], timings: dict[str, float],
           progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run one forget job; returns the report fields (status, inputs, outputs, config, metrics)."""
    t0 = time.perf_counter()
    method = get_method(job.method)
    config = parse_config(method.Config, load_config_values(job.config_file, job.sets), job.method)
    targets = plan_targets(job)
    if targets.queue is not None and job.requests:
        raise BadInput("give request files or --queue DIR, not both")
    requests = read_request_files(job.requests) if targets.queue is None else None

    with hold_locks(targets.locks(), job.wait, what=str(targets.out), warn=warn):
        crash_point("locked")
        _remove_stale_temps(targets.out, journal_path(targets.ledger))
        recover_journal(targets.ledger, _sha_or_none, warn)
        ledger = read_ledger(targets.ledger, warn)
        return _forget_locked(job, method, config, targets, requests, ledger,
                              warn=warn, timings=timings, progress=progress, t0=t0)


def _forget_locked(job: ForgetJob, method: Any, config: Any, targets: Targets, requests: Requests | None,
                   ledger: Any, *, warn, timings, progress, t0: float) -> dict[str, Any]:
    import numpy as np
    import torch

    from unlearn_cli.models.checkpoint import load_checkpoint
    from unlearn_cli.models.datasets import dataset_for
    from unlearn_cli.models.predict import load_predictor

    base = choose_base(job, targets, warn)
    ckpt = load_checkpoint(base)
    dataset = dataset_for(ckpt, job.data)
    recorded_sha = ckpt.dataset.get("data_sha256")
    if recorded_sha and recorded_sha != dataset.data_sha256:
        warn(f"the data file of {dataset.manifest_path.name} differs from the one {base.name} was trained on "
             "(same train IDs); removal goes by ID")
    check_requirement(method, ckpt)
    if requests is None:  # queue mode: each file screened on its own
        requests = screen_queue(queue_ops.list_queue(targets.queue), dataset, job.ignore_unknown)
        for item, reason in requests.rejected:
            warn(f"refused request file {item.name}: {reason}")
    request = requests.request
    known: list[str] = []
    skipped: list[str] = []
    if request is not None:
        if request.duplicates:
            warn(f"{len(request.duplicates)} duplicate IDs in the request were collapsed")
        known, skipped = check_known(request.ids, dataset.train_ids, dataset.test_ids,
                                     job.ignore_unknown or targets.queue is not None)
        if skipped:
            warn(f"skipped {len(skipped)} IDs not in the train split (--ignore-unknown)")

    previously = ledger.removed_on_the_way_to(ckpt.sha256, ckpt.lineage)
    unrecorded = ledger.unrecorded_steps(ckpt.sha256, ckpt.lineage)
    if unrecorded:
        warn(f"{unrecorded} earlier removal(s) in the lineage of {base.name} are not in ledger "
             f"{targets.ledger}; their records cannot be recognised as already removed")
    new = [i for i in known if id_digest(i) not in previously]
    already = len(known) - len(new)
    if already:
        warn(f"{already} requested IDs were already removed from {base.name} (per the ledger); skipped")
    seed = int(job.seed if job.seed is not None else ckpt.training.get("seed", 0))
    run = _RunFacts(job=job, method_config=config, seed=seed, targets=targets, base=base, ckpt=ckpt,
                    dataset=dataset, requests=requests, known=known, new=new, skipped=skipped, already=already)
    timings["load_s"] = time.perf_counter() - t0

    if not new:
        return _finish_without_change(run, warn)

    train_rows = dataset.train_indices()
    forget_rows = np.sort(dataset.index_of(new))
    retain_mask = dataset.train.copy()
    retain_mask[forget_rows] = False
    if previously:  # records removed by earlier runs must not be learned from again
        gone = [row for row, rid in zip(train_rows, dataset.train_ids) if id_digest(rid) in previously]
        retain_mask[np.asarray(gone, dtype=np.int64)] = False
    retain_rows = np.flatnonzero(retain_mask)
    if len(retain_rows) == 0:
        raise BadInput("the request removes every training record; nothing would remain to learn from")

    splits = {"test": dataset.test_indices(), "retain": retain_rows, "forget": forget_rows}
    t1 = time.perf_counter()
    before = split_metrics(load_predictor(ckpt, job.device), dataset, splits, job.device)
    timings["evaluate_before_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    method_request = MethodRequest(checkpoint=ckpt, dataset=dataset, forget_rows=forget_rows,
                                   retain_rows=retain_rows, device=job.device, seed=seed,
                                   progress=progress or (lambda *a: None), warn=warn)
    outcome: Outcome = method.forget(method_request, config)
    timings["method_s"] = time.perf_counter() - t1
    for name, value in outcome.timings.items():
        if name != "method_s":
            timings[f"method.{name}"] = value
    crash_point("method-done")

    bad = [k for k, v in outcome.state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise BadInput(f"method '{job.method}' produced non-finite weights (tensor '{bad[0]}'); nothing was written")
    meta = _child_meta(ckpt, dataset, targets.out, job.method, config, new, request.sha256, outcome)
    from unlearn_cli.models.checkpoint import Checkpoint

    new_ckpt = Checkpoint(outcome.state, meta, targets.out, None)
    t1 = time.perf_counter()
    after = split_metrics(load_predictor(new_ckpt, job.device), dataset, splits, job.device)
    timings["evaluate_after_s"] = time.perf_counter() - t1
    reason = method.check(method_request, config, outcome)
    if reason:
        raise GateFailed(f"method '{job.method}' refused its own result: {reason}")

    t1 = time.perf_counter()
    outputs, entry = _publish(run, outcome, meta, before, after)
    timings["write_s"] = time.perf_counter() - t1
    queue_report = _settle_queue(run, warn)
    return _fields(run, "ok", outputs, entry, queue_report, metrics={
        "before": before,
        "after": after,
        "requested": len(request.ids),
        "forgotten": len(new),
        "already_removed": already,
        "skipped_unknown": len(skipped),
        "method": outcome.metrics,
    })


@dataclass
class _RunFacts:
    """What the later steps of one run need to know (kept together to keep signatures short)."""

    job: ForgetJob
    method_config: Any
    seed: int
    targets: Targets
    base: Path
    ckpt: Any
    dataset: Any
    requests: Requests
    known: list[str]
    new: list[str]
    skipped: list[str]
    already: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def _short(split_metrics_: dict[str, Any]) -> dict[str, Any]:
    keep = ("n", "accuracy", "loss")
    return {split: {k: v for k, v in values.items() if k in keep} for split, values in split_metrics_.items()}


def _ledger_entry(run: _RunFacts, status: str, output: dict[str, Any],
                  metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    from unlearn_cli.ops.ledger import removed_digests
    from unlearn_cli.ops.clock import utc_now

    request = run.requests.request
    return {
        "ledger": LEDGER_FORMAT,
        "run_id": run.run_id,
        "time": utc_now(),
        "tool_version": __version__,
        "command": "forget",
        "status": status,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "method": run.job.method,
        "config": config_dict(run.method_config),
        "seed": run.seed,
        "requests": [{"file": f.file, "sha256": f.sha256, "ids": f.ids} for f in run.requests.files],
        "rejected": [{"file": item.name, "sha256": item.sha256, "reason": " ".join(reason.split())}
                     for item, reason in run.requests.rejected],
        "ids": {
            "requested": len(request.ids) if request is not None else 0,
            "removed": len(run.new),
            "already_removed": run.already,
            "unknown_skipped": len(run.skipped),
        },
        "removed_id_sha256": removed_digests(run.new),
        "removed_ids_digest": id_set_digest(run.new) if run.new else None,
        "input": {"path": os.path.abspath(run.base), "sha256": run.ckpt.sha256},
        "output": output,
        "metrics": metrics or {},
    }


def _publish(run: _RunFacts, outcome: Outcome, meta: dict[str, Any], before: dict[str, Any],
             after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sidecars, checkpoint (temp, verified), journal, rename, ledger line: in that order."""
    from unlearn_cli.models.checkpoint import checkpoint_bytes, verify_file
    from unlearn_cli.models.sidecar import save_sidecar, sidecar_path
    from unlearn_cli.ops.atomic import write_bytes

    out, ledger = run.targets.out, run.targets.ledger
    data = checkpoint_bytes(outcome.state, meta)
    digest = hashlib.sha256(data).hexdigest()
    outputs: dict[str, Any] = {"checkpoint": {"path": str(out), "sha256": digest}}
    entry = _ledger_entry(run, "ok", {"path": os.path.abspath(out), "sha256": digest},
                          {"before": _short(before), "after": _short(after)})
    new_sidecars: list[Path] = []

    def verify_then_journal(tmp: Path) -> None:
        verify_file(tmp)               # loads back, every weight finite
        crash_point("verified")
        write_journal(ledger, entry, out)
        crash_point("journaled")

    try:
        # Sidecars are named after the new checkpoint's sha256, so they can go first:
        # until the checkpoint is published nothing refers to them.
        for name, tensors in outcome.sidecars.items():
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
    outputs["ledger"] = {"path": str(ledger), "sha256": _sha_or_none(ledger), "run_id": run.run_id}
    return outputs, entry


def _finish_without_change(run: _RunFacts, warn: Callable[[str], None]) -> dict[str, Any]:
    """Nothing new to remove: record that in the ledger, settle the queue, change no checkpoint."""
    status = "failed" if (run.requests.request is None and run.requests.rejected) else "nothing-to-do"
    unchanged = {"path": os.path.abspath(run.base), "sha256": run.ckpt.sha256}
    entry = _ledger_entry(run, status, unchanged)
    ledger = run.targets.ledger
    try:
        append_line(ledger, entry)
    except OSError as exc:
        raise BadInput(f"{ledger}: cannot append the ledger line ({exc.strerror or exc})") from None
    crash_point("ledgered")
    queue_report = _settle_queue(run, warn)
    outputs = {"ledger": {"path": str(ledger), "sha256": _sha_or_none(ledger), "run_id": run.run_id}}
    request = run.requests.request
    return _fields(run, status, outputs, entry, queue_report, metrics={
        "requested": len(request.ids) if request is not None else 0,
        "forgotten": 0,
        "already_removed": run.already,
        "skipped_unknown": len(run.skipped),
    })


def _settle_queue(run: _RunFacts, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """Move queue files out only now that the checkpoint and ledger line are durable."""
    directory = run.targets.queue
    if directory is None:
        return None
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
        moved = queue_ops.settle(directory, item, queue_ops.FAILED, reason)
        if moved is None:
            left.append(item.name)
        else:
            failed.append({"file": str(moved), "reason": " ".join(reason.split())})
    return {"dir": str(directory), "done": done, "failed": failed, "left": left}


def _fields(run: _RunFacts, status: str, outputs: dict[str, Any], entry: dict[str, Any],
            queue_report: dict[str, Any] | None, metrics: dict[str, Any]) -> dict[str, Any]:
    request = run.requests.request
    requests_input: dict[str, Any] = {
        "path": request.source if request is not None else "",
        "sha256": request.sha256 if request is not None else None,
        "files": [{"file": f.file, "sha256": f.sha256, "ids": f.ids} for f in run.requests.files],
    }
    checkpoint = Path(run.job.checkpoint)
    continued = run.base != checkpoint  # --queue continuing from its own earlier output
    inputs = {
        "checkpoint": {"path": str(checkpoint),
                       "sha256": _sha_or_none(checkpoint) if continued else run.ckpt.sha256},
        "data": {"path": str(run.dataset.manifest_path), "sha256": run.dataset.data_sha256},
        "requests": requests_input,
    }
    if continued:
        inputs["base"] = {"path": str(run.base), "sha256": run.ckpt.sha256}
    fields: dict[str, Any] = {
        "status": status,
        "inputs": inputs,
        "outputs": outputs,
        "config": {"method": run.job.method, "options": config_dict(run.method_config), "seed": run.seed,
                   "device": str(run.job.device), "in_place": run.job.in_place},
        "metrics": metrics,
        "ledger": {"path": str(run.targets.ledger), "run_id": run.run_id, "status": entry["status"]},
    }
    if queue_report is not None:
        fields["queue"] = queue_report
    return fields


def _child_meta(ckpt: Any, dataset: Any, out: Path, method: str, config: Any, ids: list[str], request_sha: str,
                outcome: Outcome) -> dict[str, Any]:
    """The new checkpoint's metadata: the parent's plus one lineage entry (no raw IDs)."""
    from unlearn_cli.models.checkpoint import relative_manifest
    from unlearn_cli.ops.clock import utc_now

    meta = {k: v for k, v in ckpt.meta.items() if k not in ("metrics",)}
    meta.update(outcome.meta_updates)
    if isinstance(meta.get("dataset"), dict) and meta["dataset"].get("manifest") is not None:
        # The manifest path is stored relative to the checkpoint: re-anchor it at the output's folder.
        meta["dataset"] = {**meta["dataset"], "manifest": relative_manifest(dataset.manifest_path, out)}
    meta["lineage"] = list(ckpt.meta.get("lineage", [])) + [{
        "method": method,
        "config": config_dict(config),
        "count": len(ids),
        "removed_ids_digest": id_set_digest(ids),
        "request_sha256": request_sha,
        "parent_sha256": ckpt.sha256,
        "time": utc_now(),
        "tool_version": __version__,
    }]
    return meta

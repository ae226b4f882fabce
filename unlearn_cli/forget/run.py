"""The forget workflow: requests -> method plugin -> verified, atomically published checkpoint + ledger line.

Commands call ``forget``; it holds the order of operations that every method
shares, so methods only compute new weights:

1. cheap checks before anything is locked or written: method and options,
   output and ledger folders, request files (or the queue folder);
2. the locks on the output, the ledger and the queue (``forget.targets``); under
   them: leftovers of an interrupted run are finished or removed
   (``ops.ledger`` journal, stale temp files), the ledger is read;
3. the checkpoint and its data set; the requested IDs are checked against the
   train split; IDs the ledger shows were already removed on the way to this
   checkpoint are skipped (and kept out of the retain rows);
4. before metrics, the method, non-finite and the method's own check, after
   metrics;
5. publish (``forget.publish``), each step durable before the next: sidecars,
   the checkpoint to a temp file (fsynced, loaded back, finite), the journal,
   the rename, the ledger line, then request files leave the queue.

A run killed at any instant leaves every previous file valid; the next run
completes or discards what the killed one left (see ``ops.ledger``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from unlearn_cli.errors import BadInput, GateFailed
from unlearn_cli.forget.config import check_requirement, load_config_values
from unlearn_cli.forget.job import ForgetJob, RunFacts
from unlearn_cli.forget.publish import forget_child_meta, publish_forget, record_without_change, settle_queue
from unlearn_cli.forget.requests import Requests, id_problem, read_request_files, screen_queue
from unlearn_cli.forget.targets import Targets, choose_base, locked_targets, plan_targets
from unlearn_cli.methods.base import Outcome
from unlearn_cli.methods.base import Request as MethodRequest
from unlearn_cli.methods.registry import get as get_method
from unlearn_cli.ops import queue as queue_ops
from unlearn_cli.ops.digests import NO_KEY_WARNING, resolve_key, sha256_or_none
from unlearn_cli.ops.faults import crash_point
from unlearn_cli.ops.ledger import Ledger
from unlearn_cli.options import as_dict, parse_options

Warn = Callable[[str], None]


def split_metrics(predict: Callable, dataset: Any, rows: dict[str, Any], device: Any) -> dict[str, Any]:
    from unlearn_cli.models.predict import evaluate_rows

    return {name: evaluate_rows(predict, dataset, idx, device) for name, idx in rows.items()}


def forget(job: ForgetJob, *, warn: Warn, timings: dict[str, float],
           progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run one forget job; returns the report fields (status, inputs, outputs, config, metrics)."""
    t0 = time.perf_counter()
    method = get_method(job.method)
    values = load_config_values(job.config_file, job.sets)
    config = parse_options(method.Config, values, owner=f"method '{job.method}'")
    targets = plan_targets(job.checkpoint, job.out, job.ledger, job.queue, job.in_place)
    if targets.queue is not None and job.requests:
        raise BadInput("give request files or --queue DIR, not both")
    requests = read_request_files(job.requests) if targets.queue is None else None
    key = resolve_key(job.ledger_key)

    with locked_targets(targets, job.wait, warn) as ledger:
        run = _gather(job, method, config, targets, requests, ledger, warn)
        run.key = key
        _settle_previous(run, ledger, warn)
        timings["load_s"] = time.perf_counter() - t0
        if not run.new:
            return _finish_without_change(run, warn)
        return _apply(run, method, warn=warn, timings=timings, progress=progress)


# -- the steps of one locked run ---------------------------------------------------

def _gather(job: ForgetJob, method: Any, config: Any, targets: Targets, requests: Requests | None,
            ledger: Ledger, warn: Warn) -> RunFacts:
    """Load the base checkpoint and its data; settle which requested IDs are new, unknown or already removed."""
    from unlearn_cli.models.checkpoint import load_checkpoint
    from unlearn_cli.models.datasets import dataset_for

    base = choose_base(job.checkpoint, job.in_place, targets, warn)
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
    known, skipped = _known_ids(requests, dataset, job.ignore_unknown or targets.queue is not None, warn)
    seed = int(job.seed if job.seed is not None else ckpt.training.get("seed", 0))
    return RunFacts(job=job, method_config=config, seed=seed, targets=targets, base=base, ckpt=ckpt,
                    dataset=dataset, requests=requests, known=known, new=list(known), skipped=skipped, already=0)


def _settle_previous(run: RunFacts, ledger: Ledger, warn: Warn) -> None:
    """Which known IDs the ledger shows were already removed on the way to the base; SISA positions unsealed.

    Digests recorded under another ledger key cannot be compared: the run is refused rather than
    applying a removal twice.
    """
    from unlearn_cli.models.ensemble import unseal_removed

    ckpt, base = run.ckpt, run.base
    if isinstance(ckpt.meta.get("sisa"), dict):
        ckpt.meta["sisa"] = unseal_removed(ckpt.meta["sisa"], list(run.dataset.train_ids), run.key, base.name)
    previously = ledger.removed_on_the_way_to(ckpt.sha256, ckpt.lineage)
    previously.require_comparable(run.key, base.name)
    unrecorded = ledger.unrecorded_steps(ckpt.sha256, ckpt.lineage)
    if unrecorded:
        warn(f"{unrecorded} earlier removal(s) in the lineage of {base.name} are not in ledger "
             f"{run.targets.ledger}; their records cannot be recognised as already removed")
    run.previously = previously
    run.new = [i for i in run.known if not previously.holds(i, run.key)]
    run.already = len(run.known) - len(run.new)
    if run.already:
        warn(f"{run.already} requested IDs were already removed from {base.name} (per the ledger); skipped")


def _known_ids(requests: Requests, dataset: Any, ignore_unknown: bool, warn: Warn) -> tuple[list[str], list[str]]:
    """(requested IDs in the train split, IDs skipped as unknown); duplicates collapsed.

    A refusal names counts and the request file, never an ID, except on the terminal (``private``).
    """
    request = requests.request
    if request is None:
        return [], []
    if request.duplicates:
        warn(f"{len(request.duplicates)} duplicate IDs in the request were collapsed")
    train, test = set(dataset.train_ids), set(dataset.test_ids)
    problem = id_problem(request.ids, train, test, ignore_unknown, request.source)
    if problem is not None:
        raise problem
    known = [i for i in request.ids if i in train]
    skipped = [i for i in request.ids if i not in train]
    if skipped:
        warn(f"skipped {len(skipped)} IDs not in the train split (--ignore-unknown)")
    return known, skipped


def _split_rows(run: RunFacts) -> dict[str, Any]:
    """Row indices of the test, retain and forget splits; records removed earlier are in none of them."""
    import numpy as np

    dataset, previously = run.dataset, run.previously
    train_rows = dataset.train_indices()
    forget_rows = np.sort(dataset.index_of(run.new))
    retain_mask = dataset.train.copy()
    retain_mask[forget_rows] = False
    if previously:  # records removed by earlier runs must not be learned from again
        gone = [row for row, rid in zip(train_rows, dataset.train_ids) if previously.holds(rid, run.key)]
        retain_mask[np.asarray(gone, dtype=np.int64)] = False
    retain_rows = np.flatnonzero(retain_mask)
    if len(retain_rows) == 0:
        raise BadInput("the request removes every training record; nothing would remain to learn from")
    return {"test": dataset.test_indices(), "retain": retain_rows, "forget": forget_rows}


def _apply(run: RunFacts, method: Any, *, warn: Warn, timings: dict[str, float],
           progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    """Before metrics, the method, its checks, after metrics, publish, settle the queue."""
    from unlearn_cli.models.checkpoint import Checkpoint
    from unlearn_cli.models.predict import load_predictor

    job, dataset = run.job, run.dataset
    splits = _split_rows(run)
    evaluated = {**splits, "retain": _eval_sample(splits["retain"], run.seed)}
    t1 = time.perf_counter()
    before = split_metrics(load_predictor(run.ckpt, job.device), dataset, evaluated, job.device)
    timings["evaluate_before_s"] = time.perf_counter() - t1

    method_request = MethodRequest(checkpoint=run.ckpt, dataset=dataset, forget_rows=splits["forget"],
                                   retain_rows=splits["retain"], device=job.device, seed=run.seed,
                                   progress=progress or (lambda *a: None), warn=warn)
    outcome = _run_method(run, method, method_request, timings)
    meta = forget_child_meta(run, outcome)
    after_ckpt = Checkpoint(outcome.state, meta, run.targets.out, None)
    t1 = time.perf_counter()
    after = split_metrics(load_predictor(after_ckpt, job.device), dataset, evaluated, job.device)
    timings["evaluate_after_s"] = time.perf_counter() - t1
    reason = method.check(method_request, run.method_config, outcome)
    if reason:
        raise GateFailed(f"method '{job.method}' refused its own result: {reason}")

    if run.key is None:
        warn(NO_KEY_WARNING)
    t1 = time.perf_counter()
    outputs, entry = publish_forget(run, outcome, meta, before, after)
    timings["write_s"] = time.perf_counter() - t1
    queue_report = settle_queue(run, warn)
    return _fields(run, "ok", outputs, entry, queue_report, metrics={
        "before": before,
        "after": after,
        "requested": run.requests.requested,
        "forgotten": len(run.new),
        "already_removed": run.already,
        "skipped_unknown": len(run.skipped),
        "retain_evaluated": {"records": int(len(evaluated["retain"])), "of": int(len(splits["retain"]))},
        "method": outcome.metrics,
    })


#: before/after retain metrics are taken on a seeded sample of this many remaining records (the report
#: states the sample and the population): a full pass would cost more than a warm PUMA request
RETAIN_EVAL_SAMPLE = 2000


def _eval_sample(rows: Any, seed: int) -> Any:
    import numpy as np

    if len(rows) <= RETAIN_EVAL_SAMPLE:
        return rows
    return np.sort(np.random.default_rng([seed, 7]).choice(rows, RETAIN_EVAL_SAMPLE, replace=False))


def _run_method(run: RunFacts, method: Any, request: MethodRequest, timings: dict[str, float]) -> Outcome:
    """The method's new weights, timed; refused when any weight is not finite."""
    import torch

    t1 = time.perf_counter()
    outcome: Outcome = method.forget(request, run.method_config)
    timings["method_s"] = time.perf_counter() - t1
    for name, value in outcome.timings.items():
        if name != "method_s":
            timings[f"method.{name}"] = value
    crash_point("method-done")
    bad = [k for k, v in outcome.state.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise BadInput(f"method '{run.job.method}' produced non-finite weights (tensor '{bad[0]}'); "
                       "nothing was written")
    return outcome


def _finish_without_change(run: RunFacts, warn: Warn) -> dict[str, Any]:
    """Nothing new to remove: record that in the ledger, settle the queue, change no checkpoint."""
    status, outputs, entry = record_without_change(run)
    queue_report = settle_queue(run, warn)
    return _fields(run, status, outputs, entry, queue_report, metrics={
        "requested": run.requests.requested,
        "forgotten": 0,
        "already_removed": run.already,
        "skipped_unknown": len(run.skipped),
    })


def _fields(run: RunFacts, status: str, outputs: dict[str, Any], entry: dict[str, Any],
            queue_report: dict[str, Any] | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """The report of one run: status, inputs, outputs, config, metrics, ledger (and queue)."""
    request = run.requests.request
    requests_input: dict[str, Any] = {
        "path": request.source if request is not None else "",
        "sha256": request.sha256 if request is not None else None,
        "files": [f.as_dict() for f in run.requests.files],
    }
    checkpoint = Path(run.job.checkpoint)
    continued = run.base != checkpoint  # --queue continuing from its own earlier output
    inputs = {
        "checkpoint": {"path": str(checkpoint),
                       "sha256": sha256_or_none(checkpoint) if continued else run.ckpt.sha256},
        "data": {"path": str(run.dataset.manifest_path), "sha256": run.dataset.data_sha256},
        "requests": requests_input,
    }
    if continued:
        inputs["base"] = {"path": str(run.base), "sha256": run.ckpt.sha256}
    fields: dict[str, Any] = {
        "status": status,
        "inputs": inputs,
        "outputs": outputs,
        "config": {"method": run.job.method, "options": as_dict(run.method_config), "seed": run.seed,
                   "device": str(run.job.device), "in_place": run.job.in_place},
        "metrics": metrics,
        "ledger": {"path": str(run.targets.ledger), "run_id": run.run_id, "status": entry["status"]},
    }
    if queue_report is not None:
        fields["queue"] = queue_report
    return fields

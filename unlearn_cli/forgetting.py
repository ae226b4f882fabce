"""The forget workflow: requests -> method plugin -> verified, atomically written checkpoint.

Commands call ``forget``; it holds the order of operations that every method
shares (validation, before/after metrics, lineage, atomic publish) so methods
only compute new weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .data.ids import check_known, id_set_digest, read_requests
from .errors import BadInput, GateFailed
from .methods.base import Outcome, Request, config_dict, parse_config, parse_sets
from .methods.registry import get as get_method
from .models.checkpoint import Checkpoint, save_checkpoint
from .models.sidecar import save_sidecar, sidecar_path
from .workflow import dataset_for, evaluate_rows, load_predictor, utc_now

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


def check_requirement(method: Any, ckpt: Checkpoint) -> None:
    need = method.requires
    if need == "plain":
        return
    if need == "sisa" and ckpt.kind != "sisa":
        raise BadInput(f"method '{method.name}' needs a SISA checkpoint; {ckpt.path.name} is '{ckpt.kind}'; "
                       f"{HOW_TO_TRAIN['sisa']}")
    if need == "update-log" and not ckpt.meta.get("update_log"):
        raise BadInput(f"method '{method.name}' needs a checkpoint trained with --track-updates; "
                       f"{ckpt.path.name} has no update log; {HOW_TO_TRAIN['update-log']}")


def split_metrics(predict: Callable, dataset: Any, rows: dict[str, np.ndarray], device: Any) -> dict[str, Any]:
    return {name: evaluate_rows(predict, dataset, idx, device) for name, idx in rows.items()}


def forget(job: ForgetJob, *, warn: Callable[[str], None], timings: dict[str, float],
           progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run one forget job; returns the report fields (inputs, outputs, config, metrics)."""
    from .models.checkpoint import load_checkpoint

    t0 = time.perf_counter()
    ckpt = load_checkpoint(job.checkpoint)
    dataset = dataset_for(ckpt, job.data)
    method = get_method(job.method)
    check_requirement(method, ckpt)
    config = parse_config(method.Config, load_config_values(job.config_file, job.sets), job.method)
    request = read_requests(job.requests)
    if request.duplicates:
        warn(f"{len(request.duplicates)} duplicate IDs in the request were collapsed")
    known, skipped = check_known(request.ids, dataset.train_ids, dataset.test_ids, job.ignore_unknown)
    if skipped:
        warn(f"skipped {len(skipped)} IDs not in the train split (--ignore-unknown)")
    out = Path(job.out) if job.out is not None else default_output(Path(job.checkpoint))
    if out.resolve() == Path(job.checkpoint).resolve():
        raise BadInput(f"{out}: refusing to overwrite the input checkpoint (choose another --out)")
    if not out.parent.is_dir():
        raise BadInput(f"{out}: output directory '{out.parent}' does not exist")
    forget_rows = np.sort(dataset.index_of(known))
    retain_mask = dataset.train.copy()
    retain_mask[forget_rows] = False
    retain_rows = np.flatnonzero(retain_mask)
    if len(retain_rows) == 0:
        raise BadInput("the request removes every training record; nothing would remain to learn from")
    seed = int(job.seed if job.seed is not None else ckpt.training.get("seed", 0))
    timings["load_s"] = time.perf_counter() - t0

    splits = {"test": dataset.test_indices(), "retain": retain_rows, "forget": forget_rows}
    t0 = time.perf_counter()
    before = split_metrics(load_predictor(ckpt, job.device), dataset, splits, job.device)
    timings["evaluate_before_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    method_request = Request(checkpoint=ckpt, dataset=dataset, forget_rows=forget_rows, retain_rows=retain_rows,
                             device=job.device, seed=seed, progress=progress or (lambda *a: None), warn=warn)
    outcome: Outcome = method.forget(method_request, config)
    timings["method_s"] = time.perf_counter() - t0
    for name, value in outcome.timings.items():
        if name != "method_s":
            timings[f"method.{name}"] = value

    bad = [k for k, v in outcome.state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise BadInput(f"method '{job.method}' produced non-finite weights (tensor '{bad[0]}'); nothing was written")
    meta = _child_meta(ckpt, job.method, config, known, request.sha256, outcome)
    new_ckpt = Checkpoint(outcome.state, meta, out, None)
    t0 = time.perf_counter()
    after = split_metrics(load_predictor(new_ckpt, job.device), dataset, splits, job.device)
    timings["evaluate_after_s"] = time.perf_counter() - t0
    reason = method.check(method_request, config, outcome)
    if reason:
        raise GateFailed(f"method '{job.method}' refused its own result: {reason}")

    t0 = time.perf_counter()
    digest = save_checkpoint(out, outcome.state, meta)
    outputs = {"checkpoint": {"path": str(out), "sha256": digest}}
    for name, tensors in outcome.sidecars.items():
        path = sidecar_path(out, digest, name)
        outputs[f"sidecar.{name}"] = {"path": str(path), "sha256": save_sidecar(path, tensors, {"checkpoint": digest})}
    timings["write_s"] = time.perf_counter() - t0
    return {
        "inputs": {
            "checkpoint": {"path": str(job.checkpoint), "sha256": ckpt.sha256},
            "data": {"path": str(dataset.manifest_path), "sha256": dataset.data_sha256},
            "requests": {"path": request.source, "sha256": request.sha256},
        },
        "outputs": outputs,
        "config": {"method": job.method, "options": config_dict(config), "seed": seed,
                   "device": str(job.device)},
        "metrics": {
            "before": before,
            "after": after,
            "requested": len(request.ids),
            "forgotten": len(known),
            "skipped_unknown": len(skipped),
            "method": outcome.metrics,
        },
    }


def _child_meta(ckpt: Checkpoint, method: str, config: Any, ids: list[str], request_sha: str,
                outcome: Outcome) -> dict[str, Any]:
    """The new checkpoint's metadata: the parent's plus one lineage entry (no raw IDs)."""
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("metrics",)}
    meta.update(outcome.meta_updates)
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

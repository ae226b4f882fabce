"""A new checkpoint from a data set, as ``unlearn train`` makes it: train, evaluate, write.

Three variants of one run:

* plain: the one training loop on the train split (``training/fit.py``);
* SISA (``--sisa-shards``): isolated constituents on disjoint shards
  (``training/sisa.py``), tensors prefixed ``shard{i}.``, with a sidecar
  holding every constituent's state after every slice;
* tracked (``--track-updates``): a plain model and a sidecar with every
  batch's parameter update, for Amnesiac unlearning (``training/update_log.py``).

Sidecars are named ``<sha256[:16]>.<name>.safetensors`` beside the checkpoint
(``models/sidecar.py``). Both files are written atomically, the sidecars
first and the checkpoint last, verified (``_write``); ``unlearn train``
checks beforehand that ``out`` is new (or ``--force``) and no input.

The library never prints: progress goes to a ``progress(phase, done, total)``
callback, warnings to ``warn(message)``, and each stage (train, evaluate,
write) runs inside ``phase(name)`` so the caller can time it.
"""

from __future__ import annotations

import contextlib
import hashlib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from unlearn_cli.ops.progress import Progress
from unlearn_cli.data.dataset import Dataset
from unlearn_cli.errors import BadInput
from unlearn_cli.models.checkpoint import checkpoint_bytes, param_count, verify_file
from unlearn_cli.models.predict import evaluate_splits
from unlearn_cli.models.sidecar import save_sidecar, sidecar_path
from unlearn_cli.ops import dist
from unlearn_cli.ops.atomic import write_bytes
from unlearn_cli.training.fit import base_meta, fit
from unlearn_cli.training.loop import Recipe

#: The default number of slices per SISA shard (no slicing).
DEFAULT_SLICES = 1
#: The default SISA aggregate: the paper's majority vote.
DEFAULT_AGGREGATE = "vote"


@dataclass(frozen=True)
class TrainVariant:
    """Which checkpoint to make: SISA (``sisa_shards`` set), tracked, or plain.

    Checked on construction: SISA and update tracking are alternatives, and
    the slice/aggregate options need ``sisa_shards``.
    """

    sisa_shards: int | None = None
    sisa_slices: int | None = None
    sisa_aggregate: str | None = None
    track_updates: bool = False

    def __post_init__(self) -> None:
        shards, slices, aggregate = self.sisa_shards, self.sisa_slices, self.sisa_aggregate
        if shards is None and (slices is not None or aggregate is not None):
            option = "--sisa-slices" if slices is not None else "--sisa-aggregate"
            raise BadInput(f"{option} needs --sisa-shards S")
        if shards is not None and self.track_updates:
            raise BadInput("--track-updates and --sisa-shards are alternatives: a SISA ensemble is unlearned by "
                           "retraining shards, an update log by subtracting batches; choose one")
        if shards is not None and shards < 1:
            raise BadInput(f"--sisa-shards must be >= 1, got {shards}")
        if slices is not None and slices < 1:
            raise BadInput(f"--sisa-slices must be >= 1, got {slices}")
        if aggregate is not None and aggregate not in ("vote", "mean"):
            raise BadInput(f"--sisa-aggregate must be vote or mean, got '{aggregate}'")

    @property
    def sisa(self) -> bool:
        return self.sisa_shards is not None

    def sisa_config(self) -> dict[str, Any]:
        """shards, slices and aggregate with their defaults filled in."""
        return {
            "shards": self.sisa_shards,
            "slices": self.sisa_slices if self.sisa_slices is not None else DEFAULT_SLICES,
            "aggregate": self.sisa_aggregate or DEFAULT_AGGREGATE,
        }

    def describe(self, arch_spec: dict[str, Any]) -> str:
        """What is being trained, for a progress bar."""
        if self.sisa:
            return f"training {self.sisa_shards} SISA constituents"
        if self.track_updates:
            return f"training {arch_spec['name']} (tracking updates)"
        return f"training {arch_spec['name']}"


@dataclass
class TrainedCheckpoint:
    """What one ``unlearn train`` run made and measured."""

    state: dict[str, Any]                  # the checkpoint's tensors
    meta: dict[str, Any]                   # its ``unlearn`` metadata (metrics included)
    splits: dict[str, Any]                 # accuracy, loss, ECE and n per split
    metrics: dict[str, Any]                # the report's metrics: splits, final loss, parameters, extras
    outputs: dict[str, tuple[Path, str]] = field(default_factory=dict)  # report name -> (path, sha256)


@dataclass
class _Trained:
    """One variant's training outcome, before evaluation."""

    state: dict[str, Any]
    predictor: Any                         # x -> logits: the model, or the SISA aggregate
    losses: list[float]
    sidecars: dict[str, dict[str, Any]]    # sidecar name -> tensors
    extra: dict[str, Any]                  # entries the variant adds to the report's metrics


def train_checkpoint(
    dataset: Dataset,
    arch_spec: dict[str, Any],
    recipe: Recipe,
    out: Path,
    variant: TrainVariant,
    *,
    device: Any = "cpu",
    progress: Progress | None = None,
    warn: Callable[[str], None] = lambda message: None,
    phase: Callable[[str], AbstractContextManager] = nullcontext,  # nullcontext(name): untimed
) -> TrainedCheckpoint:
    """Train ``variant`` on the train split, evaluate it on train and test, write it to ``out``."""
    meta = base_meta(arch_spec, recipe, dataset, out)
    with phase("train"):
        if variant.sisa:
            trained = _train_sisa(dataset, arch_spec, recipe, meta, out, variant, device, progress, warn)
        elif variant.track_updates:
            trained = _train_tracked(dataset, arch_spec, recipe, meta, device, progress)
        else:
            model, losses = fit(dataset, dataset.train_indices(), arch_spec, recipe, device=device, progress=progress)
            trained = _Trained(model.state_dict(), model, losses, {}, {})
    with phase("evaluate"):
        splits = evaluate_splits(
            trained.predictor, dataset, {"train": dataset.train_indices(), "test": dataset.test_indices()}, device
        )
    meta["metrics"] = {k: {"accuracy": v["accuracy"], "loss": v["loss"]} for k, v in splits.items()}
    with phase("write"):
        outputs = _write(out, trained.state, meta, trained.sidecars)
    metrics = {**splits, "final_train_loss": trained.losses[-1] if trained.losses else None,
               "parameters": param_count(trained.state), **trained.extra}
    return TrainedCheckpoint(trained.state, meta, splits, metrics, outputs)


def _train_sisa(dataset, arch_spec, recipe, meta, out, variant, device, progress, warn) -> _Trained:
    """SISA constituents; ``meta`` gains ``kind: sisa`` and the ``sisa`` entry."""
    from unlearn_cli.models.checkpoint import Checkpoint
    from unlearn_cli.models.ensemble import load_ensemble
    from unlearn_cli.training.sisa import SIDECAR, constituent_metrics, train_sisa

    config = variant.sisa_config()
    trained = train_sisa(dataset, arch_spec, recipe, config["shards"], config["slices"], config["aggregate"],
                         device=device, progress=progress)
    if "warning" in trained.info:
        warn(trained.info["warning"])
    meta.update(kind="sisa", sisa=trained.meta)
    predictor = load_ensemble(Checkpoint(trained.state, meta, out), device)
    extra = {"constituents": constituent_metrics(trained.state, meta, dataset, device)}
    return _Trained(trained.state, predictor, [], {SIDECAR: trained.slice_states}, extra)


def _train_tracked(dataset, arch_spec, recipe, meta, device, progress) -> _Trained:
    """A plain model and its update log; ``meta`` gains the ``update_log`` entry."""
    from unlearn_cli.training.update_log import SIDECAR, train_tracked

    model, losses, log, log_meta = train_tracked(
        dataset, dataset.train_indices(), arch_spec, recipe, device=device, progress=progress)
    meta["update_log"] = log_meta
    extra = {"update_log": {"steps": log_meta["steps"], "bytes": log_meta["bytes"]}}
    return _Trained(model.state_dict(), model, losses, {SIDECAR: log}, extra)


def _write(out: Path, state: dict[str, Any], meta: dict[str, Any],
           sidecars: dict[str, dict[str, Any]]) -> dict[str, tuple[Path, str]]:
    """Each sidecar keyed to the checkpoint's sha256, then the checkpoint (verified); (path, sha256) per report name.

    Sidecars go first: until the checkpoint is published nothing refers to
    them, so a failure at any step (full disk, killed run) never leaves a
    checkpoint without its sidecar; the sidecars this run made are removed.
    Under torchrun every rank first agrees that none failed; rank 0 alone writes.
    """
    data = checkpoint_bytes(state, meta)
    digest = hashlib.sha256(data).hexdigest()
    outputs = {"checkpoint": (Path(out), digest)}
    with dist.all_or_none("writing the checkpoint"):
        dist.fault_point("write")
    if not dist.is_main():
        return outputs
    made: list[Path] = []
    try:
        for name, tensors in sidecars.items():
            path = sidecar_path(out, digest, name)
            if not path.exists():
                made.append(path)
            outputs[f"sidecar.{name}"] = (path, save_sidecar(path, tensors, {"checkpoint": digest}))
        write_bytes(out, data, verify=verify_file)
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return outputs

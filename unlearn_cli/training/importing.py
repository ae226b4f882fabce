"""A checkpoint from weights trained elsewhere (``unlearn import``).

A plain state_dict safetensors file (``safetensors.torch.save_file(model.state_dict(), ...)``
or ``save_model``) is read through the bounded input layer (never pickle), the
module is rebuilt from ``--arch`` and the manifest's input shape and class
count, and the weights are loaded strictly. A file that does not fit says
which: missing/unexpected keys, the first shape mismatch with both shapes, an
input width that is not the manifest's feature count, an output width that is
not ``num_classes``. Every split is evaluated, so a user sees at once whether the
manifest's preprocessing matches the model's.

The training recipe (``--recipe RECIPE.yaml``: the fields of
:class:`~unlearn_cli.training.loop.Recipe`) becomes the checkpoint's
``training``. Without one the checkpoint records ``training: null`` and
``recipe: "none"``: methods and attacks that must retrain (``needs_recipe``)
refuse it (:func:`require_recipe`), and PUMA's curvature assumes weight decay
0 and cross-entropy. ``imported`` records where the weights came from.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from unlearn_cli import __version__
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.inputs import CHECKPOINT_LIMIT, brief, read_input, show_path
from unlearn_cli.training.loop import Recipe

#: ``meta["recipe"]`` of a checkpoint imported without a training recipe.
NO_RECIPE = "none"
#: Recipe keys a recipe file must give (the others have the defaults below).
REQUIRED_KEYS = ("optimizer", "lr", "epochs", "batch_size")
#: A training loop of one's own rarely adds L2: a recipe that does not say so has none.
RECIPE_DEFAULTS = {"weight_decay": 0.0, "momentum": 0.9, "seed": 0}
#: The only loss this tool trains with and PUMA's curvature models; ``loss:`` may say so.
LOSS = "cross-entropy"


def has_recipe(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint records how it was trained (every ``unlearn train`` checkpoint does)."""
    return isinstance(meta.get("training"), dict) and meta.get("recipe") != NO_RECIPE


def require_recipe(ckpt: Any, what: str) -> None:
    """Refuse (exit 2, one line) a checkpoint without a recipe; ``what`` says why one is needed
    ("method 'retrain' must retrain it")."""
    if not has_recipe(ckpt.meta):
        name = show_path(ckpt.path.name) if ckpt.path is not None else "the checkpoint"
        raise BadInput(f"{name} was imported without a training recipe; {what}: "
                       "re-import with --recipe RECIPE.yaml")


def load_recipe(path: str | Path) -> Recipe:
    """A recipe YAML file as a validated :class:`Recipe`; unknown keys list the valid ones."""
    from unlearn_cli.ops.yaml_input import load_yaml

    shown = show_path(path)
    values = load_yaml(path, "recipe file")
    if not isinstance(values, dict):
        raise BadInput(f"{shown}: a recipe must be a mapping of key: value (optimizer, lr, epochs, batch_size, ...)")
    valid = [f.name for f in fields(Recipe)] + ["loss"]
    unknown = [str(k) for k in values if k not in valid]
    if unknown:
        raise BadInput(f"{shown}: unknown recipe key '{show_path(unknown[0])}'; valid keys: {', '.join(valid)}")
    missing = [k for k in REQUIRED_KEYS if k not in values]
    if missing:
        raise BadInput(f"{shown}: the recipe lacks {', '.join(missing)} (required: {', '.join(REQUIRED_KEYS)})")
    loss = values.pop("loss", LOSS)
    if loss != LOSS:
        raise BadInput(f"{shown}: loss must be {LOSS} (the one loss this tool trains and models), "
                       f"got '{show_path(str(loss))}'")
    if not isinstance(values["optimizer"], str):
        raise BadInput(f"{shown}: optimizer must be adam or sgd")
    try:
        recipe = Recipe(**{**RECIPE_DEFAULTS, **values}).validate()
    except BadInput as exc:
        message = str(exc)
        for flag in ("--optimizer", "--lr", "--epochs", "--batch-size", "--weight-decay", "--seed"):
            message = message.replace(flag, flag[2:].replace("-", "_"))
        raise BadInput(f"{shown}: {message}") from None
    return recipe


def read_weights(path: str | Path) -> tuple[dict[str, Any], str]:
    """The tensors of a state_dict safetensors file (bounded read, no pickle) and the file's sha256."""
    import torch
    from safetensors.torch import load as st_load

    data = read_input(path, "weights file", CHECKPOINT_LIMIT)
    try:
        state = st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise BadInput(f"{show_path(path)}: not a safetensors state_dict ({brief(exc)})") from None
    if not state:
        raise BadInput(f"{show_path(path)}: the weights file holds no tensors")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadInput(f"{show_path(path)}: weights hold NaN/inf: {show_path(name)}")
    return state, hashlib.sha256(data).hexdigest()


def check_io(model: Any, dataset: Any, device: Any, source: str) -> None:
    """One train row through the model: it must accept the manifest's input and output ``num_classes``."""
    import torch

    from unlearn_cli.data.tensors import tensors

    rows = dataset.train_indices()[:1]
    x, _ = tensors(dataset, rows, device)
    features = math.prod(dataset.input_shape)
    try:
        with torch.no_grad():
            logits = model.eval()(x)
    except RuntimeError as exc:
        raise BadInput(f"{source}: the model does not accept the manifest's {features} input features "
                       f"(input_shape {list(dataset.input_shape)}): {brief(exc)}") from None
    width = int(logits.shape[-1]) if logits.dim() >= 2 else 1
    if logits.dim() != 2 or width != dataset.num_classes:
        raise BadInput(f"{source}: the model outputs {width} classes (logits shape {list(logits.shape)}), "
                       f"the manifest has num_classes {dataset.num_classes}")


@dataclass
class ImportedCheckpoint:
    """What one import made and measured."""

    state: dict[str, Any]
    meta: dict[str, Any]
    splits: dict[str, Any]            # accuracy, loss, ECE and n per split
    sha256: str                       # of the written checkpoint
    weights_sha256: str               # of the weights file read


def import_checkpoint(
    weights: str | Path,
    arch: str,
    data: Any,
    out: str | Path,
    *,
    arch_options: Iterable[str] = (),
    recipe: Recipe | str | Path | None = None,
    device: Any = "cpu",
    phase: Callable[[str], AbstractContextManager] = nullcontext,
) -> ImportedCheckpoint:
    """Wrap the state_dict in ``weights`` into an ``unlearn`` checkpoint at ``out``; returns what was written.

    ``data`` is a manifest path or a loaded ``Dataset``; ``arch_options`` are ``key=value`` builder
    options (``--arch-opt``, typed by the builder's signature); ``recipe`` a :class:`Recipe`, a recipe YAML
    path, or None (no recipe: recorded as ``training: null``, ``recipe: "none"``).
    """
    from unlearn_cli.data.manifest import load_manifest
    from unlearn_cli.models.checkpoint import fit_module, save_checkpoint
    from unlearn_cli.models.datasets import dataset_meta
    from unlearn_cli.models.predict import evaluate_splits
    from unlearn_cli.models.registry import arch_spec_for
    from unlearn_cli.ops.clock import utc_now

    weights, out = Path(weights), Path(out)
    recipe_file = None
    if isinstance(recipe, (str, Path)):
        recipe_file, recipe = Path(recipe).name, load_recipe(recipe)
    with phase("load"):
        dataset = load_manifest(data) if isinstance(data, (str, Path)) else data
        state, weights_sha = read_weights(weights)
    spec = arch_spec_for(dataset, arch, None, None, options=list(arch_options))
    source = show_path(weights)
    with phase("load weights"):
        model = fit_module(spec, state, source, input_shape=spec["kwargs"]["input_shape"],
                           num_classes=dataset.num_classes).to(device)
        check_io(model, dataset, device, source)
    with phase("evaluate"):
        splits = evaluate_splits(model, dataset, {"train": dataset.train_indices(), "test": dataset.test_indices()},
                                 device)
    meta: dict[str, Any] = {
        "kind": "plain", "arch": spec, "training": recipe.to_dict() if recipe is not None else None,
        "dataset": dataset_meta(dataset, out), "lineage": [],
        "created": {"time": utc_now(), "tool_version": __version__},
        "imported": {"source": weights.name, "weights_sha256": weights_sha, "recipe": recipe_file},
        "metrics": {k: {"accuracy": v["accuracy"], "loss": v["loss"]} for k, v in splits.items()},
    }
    if recipe is None:
        meta["recipe"] = NO_RECIPE
    new_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with phase("write"):
        sha = save_checkpoint(out, new_state, meta)
    return ImportedCheckpoint(new_state, meta, splits, sha, weights_sha)


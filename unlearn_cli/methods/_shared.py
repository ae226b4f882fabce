"""Helpers shared by the fine-tuning methods (boundary, salun, neggrad, finetune, amnesiac repair).

Not a method itself (it registers no entry point). Everything here imports
torch lazily, so importing a method module stays free.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Callable

from unlearn_cli.errors import BadInput


def opt(default: Any, doc: str, **extra: Any):
    """A config field with its one-line documentation (shown by ``unlearn methods NAME``)."""
    return field(default=default, metadata={"doc": doc, **extra})


def positive(name: str, value: float) -> None:
    if not value > 0:
        raise BadInput(f"option '{name}' must be > 0, got {value}")


def non_negative(name: str, value: float) -> None:
    if value < 0:
        raise BadInput(f"option '{name}' must be >= 0, got {value}")


def single_model(request: Any, method: str) -> None:
    """Fine-tuning methods edit one model; a SISA ensemble is edited by retraining shards."""
    ckpt = request.checkpoint
    if ckpt.kind != "plain":
        name = ckpt.path.name if ckpt.path is not None else "the checkpoint"
        raise BadInput(f"method '{method}' edits a single model, but {name} is a '{ckpt.kind}' ensemble; "
                       "use --method sisa (or retrain), or train a plain model with: unlearn train MANIFEST --out CKPT")


def stale_log(ckpt: Any) -> dict[str, Any]:
    """Metadata update: an update log no longer describes weights changed by another method."""
    return {"update_log": None} if ckpt.meta.get("update_log") else {}


def load_model(request: Any):
    """The checkpoint's module on the request's device (eval mode)."""
    return request.checkpoint.build_model(request.device)


def rows_xy(request: Any, rows: Any):
    from unlearn_cli.data.tensors import tensors

    return tensors(request.dataset, rows, request.device)


def snapshot(model) -> dict[str, Any]:
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def sgd(params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def recipe_for(epochs: int, batch_size: int, lr: float, seed: int, weight_decay: float = 0.0,
               momentum: float = 0.9):
    """A Recipe for ``train_model``: the method's own epochs, batch size and schedule seed."""
    from unlearn_cli.training.loop import Recipe

    return Recipe(optimizer="sgd", lr=lr, epochs=int(epochs), batch_size=int(batch_size),
                  weight_decay=weight_decay, momentum=momentum, seed=int(seed))


def cosine_per_epoch(optimizer, base_lr: float, epochs: int, steps_per_epoch: int) -> Callable:
    """An ``on_step`` hook giving torch's CosineAnnealingLR(T_max=epochs), stepped once per epoch."""
    import math

    def on_step(info) -> None:
        if (info.step + 1) % steps_per_epoch == 0:
            epoch = (info.step + 1) // steps_per_epoch
            for group in optimizer.param_groups:
                group["lr"] = base_lr * (1 + math.cos(math.pi * epoch / epochs)) / 2

    return on_step


def progress_hook(request: Any, phase: str) -> Callable[[int, int], None]:
    return lambda done, total: request.progress(phase, done, total)


def per_class_counts(labels: Any, num_classes: int) -> dict[str, int]:
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return {str(c): int(n) for c, n in enumerate(counts) if n}

"""Steps the methods share: the fine-tuning ones (boundary, salun, neggrad,
finetune, amnesiac's repair) load the model, fine-tune it with SGD through the
one training loop and hand back the edited weights; every method reports
progress through the same hook.

Not a method itself (it registers no entry point). Everything here imports
torch lazily, so importing a method module stays free.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable

from unlearn_cli.errors import BadInput
from unlearn_cli.methods.base import Method, Outcome, Request


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


def sgd_for(model, config: Any):
    """SGD over every weight with the config's lr, momentum and weight decay (0 where it has none)."""
    return sgd(model.parameters(), config.lr, config.momentum, getattr(config, "weight_decay", 0.0))


def recipe_for(epochs: int, batch_size: int, lr: float, seed: int, weight_decay: float = 0.0,
               momentum: float = 0.9):
    """A Recipe for ``train_model``: the method's own epochs, batch size and schedule seed."""
    from unlearn_cli.training.loop import Recipe

    return Recipe(optimizer="sgd", lr=lr, epochs=int(epochs), batch_size=int(batch_size),
                  weight_decay=weight_decay, momentum=momentum, seed=int(seed))


def fine_tune(request: Request, model, x, y, config: Any, phase: str, optimizer=None, **hooks: Any):
    """``config.epochs`` passes of SGD over (x, y) in batches of ``config.batch_size``, through the one
    training loop, the batch order seeded by ``request.seed``; ``hooks`` go to ``train_model``
    (``loss_fn``, ``after_step``, ``on_step``). Returns its result (steps, losses)."""
    from unlearn_cli.training.loop import train_model

    weight_decay = getattr(config, "weight_decay", 0.0)
    recipe = recipe_for(config.epochs, config.batch_size, config.lr, request.seed,
                        weight_decay=weight_decay, momentum=config.momentum)
    return train_model(model, x, y, recipe, device=request.device,
                       optimizer=optimizer if optimizer is not None else sgd_for(model, config),
                       progress=progress_hook(request, phase), **hooks)


class FineTuning(Method):
    """A method that edits one plain model's weights (boundary, salun, neggrad, finetune).

    A SISA ensemble is refused (it is edited by retraining shards) and the
    parent's update log goes stale. Subclasses write :meth:`edit`.
    """

    def forget(self, request: Request, config: Any) -> Outcome:
        single_model(request, self.name)
        state, metrics, timings = self.edit(request, config, time.perf_counter())
        return Outcome(state=state, metrics=metrics, timings=timings, meta_updates=stale_log(request.checkpoint))

    @abstractmethod
    def edit(self, request: Request, config: Any, started: float) -> tuple[dict, dict, dict]:
        """(new state, metrics, timings) of the edited model; ``started``: perf_counter at the start."""


def own_sidecar(ckpt: Any, name: str) -> tuple[Path | None, dict[str, Any] | None]:
    """Where the checkpoint's sidecar ``name`` lives and its tensors (None when absent or another checkpoint's)."""
    from unlearn_cli.models.sidecar import load_sidecar, sidecar_path

    if ckpt.path is None or not ckpt.sha256:
        return None, None
    path = sidecar_path(ckpt.path, ckpt.sha256, name)
    return path, load_sidecar(path, {"checkpoint": ckpt.sha256})


def cosine_per_epoch(optimizer, base_lr: float, epochs: int, steps_per_epoch: int) -> Callable:
    """An ``on_step`` hook giving torch's CosineAnnealingLR(T_max=epochs), stepped once per epoch."""
    import math

    def on_step(info) -> None:
        if (info.step + 1) % steps_per_epoch == 0:
            epoch = (info.step + 1) // steps_per_epoch
            for group in optimizer.param_groups:
                group["lr"] = base_lr * (1 + math.cos(math.pi * epoch / epochs)) / 2

    return on_step


def progress_hook(request: Any, phase: str):
    """The request's progress (``ops.progress``) with the method's phases under ``phase``: ``retrain: epoch``."""
    from unlearn_cli.ops.progress import within

    return within(request.progress, phase)


def per_class_counts(labels: Any, num_classes: int) -> dict[str, int]:
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return {str(c): int(n) for c, n in enumerate(counts) if n}

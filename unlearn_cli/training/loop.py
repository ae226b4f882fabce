"""The one training loop: train, retrain, SISA constituents, shadow models and
fine-tuning methods all call ``train_model``.

Training is seeded and deterministic on CPU: the model is initialised under
``torch.manual_seed(seed)`` by ``init_model`` and the batch order comes from
``batch_schedule``, a pure function of (n, batch size, epochs, seed), so a
checkpoint's recorded recipe is enough to replay which records sat in which
batch (Amnesiac, ordered marking). The library reports progress through
callbacks (``ops.progress``: epochs and batches, their totals up front); it
never prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.dist import fault_point
from unlearn_cli.ops.progress import Counter, Progress
from unlearn_cli.training.parallel import data_parallel, parallel_step, same_weights
from unlearn_cli.options import BATCH_SIZE, EPOCHS, LR, MAX_SEED, MOMENTUM, WEIGHT_DECAY, check_value, range_of

# Defaults per architecture; each one trains the shipped sample data in seconds
# (tabular/synthetic) or about a minute (mnist-5k) on two CPU cores.
DEFAULT_RECIPES: dict[str, dict[str, Any]] = {
    "linear": dict(optimizer="adam", lr=0.01, epochs=100, batch_size=32, weight_decay=1e-4),
    "mlp": dict(optimizer="adam", lr=0.01, epochs=100, batch_size=32, weight_decay=1e-4),
    "cnn": dict(optimizer="adam", lr=2e-3, epochs=10, batch_size=64, weight_decay=1e-4),
    "densenet": dict(optimizer="adam", lr=2e-3, epochs=6, batch_size=64, weight_decay=1e-4),
    "resnet": dict(optimizer="adam", lr=2e-3, epochs=6, batch_size=64, weight_decay=1e-4),
}


@dataclass(frozen=True)
class Recipe:
    """Everything needed to reproduce a training run (stored in the checkpoint)."""

    optimizer: str = "adam"      # adam | sgd
    lr: float = 0.01
    epochs: int = 100
    batch_size: int = 32
    weight_decay: float = 1e-4   # L2 coefficient: J = mean CE + wd/2 ||theta||^2
    momentum: float = 0.9        # sgd only
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def validate(self) -> "Recipe":
        """Every value of the right type, finite and in the range the fine-tuning options share (options.py);
        epochs may be 0 (a recipe that only initialises). Checked before any training."""
        if self.optimizer not in ("adam", "sgd"):
            raise BadInput(f"--optimizer must be adam or sgd, got '{self.optimizer}'")
        for flag, name, kind, bounds in _RECIPE_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    kind is int and isinstance(value, float) and not value.is_integer()):
                raise BadInput(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {value!r}"[:200])
            check_value(flag, value, bounds)
        return self


_RECIPE_RANGES = (  # (flag, field, type, range) in the order train's flags are listed
    ("--lr", "lr", float, range_of(**LR)),
    ("--epochs", "epochs", int, range_of(ge=0, le=EPOCHS["le"])),
    ("--batch-size", "batch_size", int, range_of(**BATCH_SIZE)),
    ("--weight-decay", "weight_decay", float, range_of(**WEIGHT_DECAY)),
    ("momentum", "momentum", float, range_of(**MOMENTUM)),
    ("--seed", "seed", int, range_of(ge=0, le=MAX_SEED)),
)


def default_recipe(arch: str, **overrides: Any) -> Recipe:
    base = dict(DEFAULT_RECIPES.get(arch, DEFAULT_RECIPES["mlp"]))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Recipe(**base).validate()


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise BadInput(f"--device must be auto, cpu or cuda, got '{name}'")
    return torch.device(name)


SMALL_MODEL_PARAMS = 100_000
#: torch's own choice at start-up, restored for models that gain from more threads.
_DEFAULT_THREADS = torch.get_num_threads()


def pick_threads(model: nn.Module) -> None:
    """Set torch's intra-op threads for training or an influence pass over ``model`` (``ops.threads``).

    Small models (under 100k parameters, convolutional or not) get one thread: splitting their small
    matmuls and convolutions across cores costs more than it saves (the breast-cancer MLP trained in
    1.7-2.7 s with one thread, 7-9.5 s with two under load; the 12k-parameter mnist-5k cnn retrained in
    4.7-5.4 s with one thread against 6.2-7.3 s with two passive ones on a quiet machine, and in
    4.8-5.4 s against 8.4-9.1 s beside a competing busy process). Larger models get the CPUs that are
    free now, at most torch's default, so a competing process does not make the worker threads wait on
    a taken core. ``UNLEARN_THREADS`` (``auto`` or a count) overrides the choice; a bad value is a
    one-line BadInput.
    """
    from unlearn_cli.ops.threads import thread_count

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS
    # Set on every call, so a small model trained first in a process (tests, the Python API) does
    # not leave a convolutional one single-threaded.
    torch.set_num_threads(thread_count(small=small, ceiling=_DEFAULT_THREADS))


def init_model(arch_spec: dict[str, Any], seed: int) -> nn.Module:
    """Build a freshly initialised module; the seed fixes the initial weights."""
    from unlearn_cli.models.registry import build

    torch.manual_seed(seed)
    return build(arch_spec)


def batch_schedule(n: int, batch_size: int, epochs: int, seed: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (epoch, step, positions) for every batch of a run, positions into 0..n-1.

    A pure function of its arguments, so the training order can be replayed
    without having stored it.
    """
    gen = torch.Generator().manual_seed(int(seed) + 1)
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).numpy()
        for start in range(0, n, batch_size):
            yield epoch, step, order[start : start + batch_size]
            step += 1


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


@dataclass
class StepInfo:
    """Passed to ``on_step`` after each optimizer step."""

    epoch: int
    step: int
    positions: np.ndarray  # positions into the training arrays of this batch
    loss: float
    model: nn.Module


@dataclass
class TrainResult:
    model: nn.Module
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    steps: int = 0


def make_optimizer(params, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    *,
    device: torch.device | str = "cpu",
    on_step: Callable[[StepInfo], None] | None = None,
    progress: Progress | None = None,
    schedule_seed: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, np.ndarray], torch.Tensor] | None = None,
    after_step: Callable[[], None] | None = None,
) -> TrainResult:
    """Minimise mean cross-entropy of ``model`` on (x, y) with the recipe.

    ``loss_fn(logits, targets, positions)`` replaces cross-entropy (fine-tuning
    methods use it); ``after_step`` runs after each optimizer step (SalUn
    restores masked weights there); ``progress`` hears ``epoch`` and ``batch``
    (optimizer steps of the whole run), both with their totals before the first step.
    """
    recipe = recipe.validate()
    device = torch.device(device)
    pick_threads(model)
    model.to(device).train()
    x = x.to(device)
    y = y.to(device)
    n = len(y)
    if n == 0:
        raise BadInput("cannot train on an empty set of records")
    opt = optimizer or make_optimizer(model.parameters(), recipe)
    seed = recipe.seed if schedule_seed is None else schedule_seed
    epochs_done = Counter(progress, "epoch", recipe.epochs)
    batches_done = Counter(progress, "batch", recipe.epochs * steps_per_epoch(n, recipe.batch_size))
    result = TrainResult(model)
    criterion = nn.CrossEntropyLoss()
    epoch_sum, epoch_count, current_epoch = 0.0, 0, 0
    parallel = data_parallel(model, loss_fn)
    fault_point("train")
    for epoch, step, positions in batch_schedule(n, recipe.batch_size, recipe.epochs, seed):
        if epoch != current_epoch:
            result.losses.append(epoch_sum / max(epoch_count, 1))
            epoch_sum, epoch_count, current_epoch = 0.0, 0, epoch
            epochs_done()
        if parallel:
            value = parallel_step(model, x, y, positions, opt)
        else:
            idx = torch.from_numpy(positions).to(device)
            logits = model(x[idx])
            loss = loss_fn(logits, y[idx], positions) if loss_fn else criterion(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
        if after_step is not None:
            after_step()
        epoch_sum += value * len(positions)
        epoch_count += len(positions)
        result.steps = step + 1
        if on_step is not None:
            on_step(StepInfo(epoch, step, positions, value, model))
        batches_done()
    if epoch_count:
        result.losses.append(epoch_sum / epoch_count)
        epochs_done()
    if parallel:
        same_weights(model)
    model.eval()
    return result


def with_seed(recipe: Recipe, seed: int) -> Recipe:
    return replace(recipe, seed=int(seed))

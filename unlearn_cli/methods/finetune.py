"""Fine-tune on the remaining records: the NeurIPS 2023 Machine Unlearning Challenge baseline.

The starting kit's ``unlearning`` function: 5 epochs of SGD (lr 0.1, momentum
0.9, weight decay 5e-4) over the retain set only, learning rate annealed per
epoch with ``CosineAnnealingLR(T_max=epochs)``, batches of 128. The forget
records are never looked at; forgetting comes only from catastrophic
forgetting while training on the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearn_cli.errors import BadInput
from unlearn_cli.methods._shared import non_negative, opt, positive
from unlearn_cli.methods.base import Method, Outcome, Request


@dataclass
class FinetuneConfig:
    epochs: int = opt(5, "epochs over the remaining records (challenge starting kit: 5)")
    lr: float = opt(0.1, "initial SGD learning rate (starting kit: 0.1)")
    momentum: float = opt(0.9, "SGD momentum (starting kit: 0.9)")
    weight_decay: float = opt(5e-4, "SGD weight decay (starting kit: 5e-4)")
    batch_size: int = opt(128, "batch size (starting kit: 128)")
    cosine: bool = opt(True, "anneal lr per epoch with CosineAnnealingLR(T_max=epochs) (starting kit: yes)")

    def validate(self) -> None:
        positive("epochs", self.epochs)
        positive("lr", self.lr)
        positive("batch_size", self.batch_size)
        non_negative("weight_decay", self.weight_decay)
        if not 0 <= self.momentum < 1:
            raise BadInput(f"option 'momentum' must be in [0, 1), got {self.momentum}")


class Finetune(Method):
    name = "finetune"
    summary = "fine-tune on the remaining records only (NeurIPS 2023 unlearning challenge baseline)"
    details = (
        "The NeurIPS 2023 Machine Unlearning Challenge starting-kit baseline: 5 epochs of SGD (lr 0.1 with "
        "per-epoch cosine annealing, momentum 0.9, weight decay 5e-4, batch 128) on the remaining records; the "
        "forget records are never used, they fade only as the model keeps training on the rest. Cheap, stable, "
        "and usually a weak forgetter: forget accuracy tends to stay above retrain's, especially for records "
        "that look like the remaining ones. The starting kit's lr 0.1 matches a ResNet trained with SGD at 0.1; "
        "for models trained with Adam at a small lr, a smaller --set lr may preserve more accuracy."
    )
    requires = "plain"
    Config = FinetuneConfig

    def forget(self, request: Request, config: FinetuneConfig) -> Outcome:
        from unlearn_cli.training.loop import steps_per_epoch, train_model
        from unlearn_cli.methods._shared import (cosine_per_epoch, load_model, progress_hook, recipe_for, rows_xy, sgd,
                              single_model, snapshot, stale_log)

        single_model(request, self.name)
        t0 = time.perf_counter()
        model = load_model(request)
        x, y = rows_xy(request, request.retain_rows)
        optimizer = sgd(model.parameters(), config.lr, config.momentum, config.weight_decay)
        recipe = recipe_for(config.epochs, config.batch_size, config.lr, request.seed,
                            weight_decay=config.weight_decay, momentum=config.momentum)
        on_step = (cosine_per_epoch(optimizer, config.lr, config.epochs, steps_per_epoch(len(y), config.batch_size))
                   if config.cosine else None)
        result = train_model(model, x, y, recipe, device=request.device, optimizer=optimizer, on_step=on_step,
                             progress=progress_hook(request, "finetune"))
        method_s = time.perf_counter() - t0
        return Outcome(state=snapshot(model), metrics={"steps": result.steps, "epoch_losses": result.losses},
                       timings={"finetune_s": method_s, "method_s": method_s},
                       meta_updates=stale_log(request.checkpoint))

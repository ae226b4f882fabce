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

from unlearn_cli.methods._shared import FineTuning
from unlearn_cli.methods.base import Request
from unlearn_cli.options import BATCH_SIZE, EPOCHS, LR, MOMENTUM, WEIGHT_DECAY, option


@dataclass
class FinetuneConfig:
    epochs: int = option(5, "epochs over the remaining records (challenge starting kit: 5)", **EPOCHS)
    lr: float = option(0.1, "initial SGD learning rate (starting kit: 0.1)", **LR)
    momentum: float = option(0.9, "SGD momentum (starting kit: 0.9)", **MOMENTUM)
    weight_decay: float = option(5e-4, "SGD weight decay (starting kit: 5e-4)", **WEIGHT_DECAY)
    batch_size: int = option(128, "batch size (starting kit: 128)", **BATCH_SIZE)
    cosine: bool = option(True, "anneal lr per epoch with CosineAnnealingLR(T_max=epochs) (starting kit: yes)")


class Finetune(FineTuning):
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
    Config = FinetuneConfig

    def edit(self, request: Request, config: FinetuneConfig, t0: float) -> tuple[dict, dict, dict]:
        from unlearn_cli.methods._shared import cosine_per_epoch, fine_tune, load_model, rows_xy, sgd_for, snapshot
        from unlearn_cli.training.loop import steps_per_epoch

        model = load_model(request)
        x, y = rows_xy(request, request.retain_rows)
        optimizer = sgd_for(model, config)
        on_step = (cosine_per_epoch(optimizer, config.lr, config.epochs, steps_per_epoch(len(y), config.batch_size))
                   if config.cosine else None)
        result = fine_tune(request, model, x, y, config, "finetune", optimizer=optimizer, on_step=on_step)
        method_s = time.perf_counter() - t0
        return (snapshot(model), {"steps": result.steps, "epoch_losses": result.losses},
                {"finetune_s": method_s, "method_s": method_s})

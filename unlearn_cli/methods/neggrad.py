"""NegGrad+: gradient ascent on the forget records plus descent on the remaining ones.

The NegGrad+ baseline of Kurmanji, Triantafillou, Hayes, Triantafillou
("Towards Unbounded Machine Unlearning", NeurIPS 2023): each step takes a batch
of remaining records and the next batch of forget records (cycled) and
minimises ``alpha * CE(retain) - (1 - alpha) * CE(forget)``. Plain NegGrad
(``alpha = 0``, ascent alone) has nothing holding the model together and
usually collapses, which is why the "+" version is the one users expect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearn_cli.methods._shared import FineTuning
from unlearn_cli.methods.base import Request
from unlearn_cli.options import BATCH_SIZE, EPOCHS, LR, MOMENTUM, WEIGHT_DECAY, option


@dataclass
class NegGradConfig:
    alpha: float = option(0.95, "weight of the retain loss; 1 - alpha weighs the ascent on the forget loss "
                                "(NegGrad+: 0.95)", ge=0, le=1)
    lr: float = option(0.01, "SGD learning rate (NegGrad+ settings: 0.01)", **LR)
    epochs: int = option(10, "passes over the remaining records (NegGrad+ settings: 10)", **EPOCHS)
    batch_size: int = option(256, "batch size of both streams (NegGrad+ settings: 256)", **BATCH_SIZE)
    momentum: float = option(0.9, "SGD momentum (NegGrad+ settings: 0.9)", **MOMENTUM)
    weight_decay: float = option(0.0, "SGD weight decay (NegGrad+ settings: 0)", **WEIGHT_DECAY)


class NegGrad(FineTuning):
    name = "neggrad"
    summary = "gradient ascent on the forget records plus descent on the remaining ones (NegGrad+, Kurmanji et al. 2023)"
    details = (
        "NegGrad+ baseline: every step pairs a batch of remaining records with the next batch of forget "
        "records (cycled) and minimises alpha * CE(retain) - (1 - alpha) * CE(forget); SGD lr 0.01, momentum "
        "0.9, 10 passes over the remaining records, batch 256, alpha 0.95 (the settings of the NegGrad+ "
        "baseline as published with SCRUB). Cheap and common, but uncalibrated: ascent has no natural stopping "
        "point, so forget accuracy can fall far below retrain's, and large lr or small alpha diverge (a run "
        "with non-finite weights is refused and nothing is written)."
    )
    Config = NegGradConfig

    def edit(self, request: Request, config: NegGradConfig, t0: float) -> tuple[dict, dict, dict]:
        import torch
        from torch.nn import functional as F

        from unlearn_cli.methods._shared import fine_tune, load_model, rows_xy, snapshot
        from unlearn_cli.training.loop import batch_schedule

        model = load_model(request)
        xf, yf = rows_xy(request, request.forget_rows)
        xr, yr = rows_xy(request, request.retain_rows)

        def forget_batches():
            # zip(retain, cycle(forget)): the forget stream restarts, reshuffled, whenever it runs out.
            cycle = 0
            while True:
                for _, _, pos in batch_schedule(len(yf), config.batch_size, 1, int(request.seed) * 7919 + cycle):
                    yield torch.from_numpy(pos).to(xf.device)
                cycle += 1

        stream = forget_batches()
        ascent = []

        def loss_fn(logits, targets, positions):
            idx = next(stream)
            forget_loss = F.cross_entropy(model(xf[idx]), yf[idx])
            ascent.append(float(forget_loss.detach()))
            return config.alpha * F.cross_entropy(logits, targets) - (1 - config.alpha) * forget_loss

        fine_tune(request, model, xr, yr, config, "neggrad", loss_fn=loss_fn)
        method_s = time.perf_counter() - t0
        metrics = {"steps": len(ascent), "forget_loss_first_step": ascent[0] if ascent else None,
                   "forget_loss_last_step": ascent[-1] if ascent else None}
        return snapshot(model), metrics, {"finetune_s": method_s, "method_s": method_s}

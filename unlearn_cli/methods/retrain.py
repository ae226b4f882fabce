"""Retrain from scratch: the exact-unlearning reference every other method is compared with.

Trains a fresh model on the remaining records with the recipe recorded in the
checkpoint (architecture, optimizer, learning rate, epochs, batch size, weight
decay and seed), through the one training loop. It is what the SISA paper
calls the baseline and the PUMA paper "Retrain Model".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearn_cli.methods.base import Method, Outcome, Request


@dataclass
class RetrainConfig:
    """No options: the recipe is the one recorded in the checkpoint (``--seed`` overrides its seed)."""


class Retrain(Method):
    name = "retrain"
    needs_recipe = True
    summary = "train from scratch on the remaining records with the checkpoint's recorded recipe (exact reference)"
    details = (
        "Exact unlearning and the reference for every other method: a new model is initialised from the "
        "recorded seed and trained on the remaining train records with the recorded recipe (optimizer, lr, "
        "epochs, batch size, weight decay); --seed overrides the seed. It costs a full training run. On a SISA "
        "checkpoint every constituent is retrained from scratch on its shard without the removed records "
        "(the ensemble stays an ensemble). An update log of the parent is dropped: it does not describe the "
        "new weights. Records removed by earlier forgets are not tracked for plain checkpoints; retrain "
        "trains on every train record not in this request."
    )
    Config = RetrainConfig

    def forget(self, request: Request, config: RetrainConfig) -> Outcome:
        from dataclasses import replace

        from unlearn_cli.training.loop import Recipe
        from unlearn_cli.training.fit import fit
        from unlearn_cli.methods._shared import progress_hook, snapshot, stale_log

        ckpt = request.checkpoint
        t0 = time.perf_counter()
        if ckpt.kind == "sisa":
            return self._retrain_sisa(request, t0)
        recipe = replace(Recipe.from_dict(ckpt.training), seed=int(request.seed))
        model, losses = fit(request.dataset, request.retain_rows, ckpt.arch, recipe, device=request.device,
                            progress=progress_hook(request, "retrain"))
        method_s = time.perf_counter() - t0
        return Outcome(
            state=snapshot(model),
            metrics={"trained_on": int(len(request.retain_rows)), "epochs": recipe.epochs, "seed": recipe.seed,
                     "final_train_loss": losses[-1] if losses else None},
            timings={"train_s": method_s, "method_s": method_s},
            meta_updates=stale_log(ckpt),
        )

    def _retrain_sisa(self, request: Request, t0: float) -> Outcome:
        from unlearn_cli.training.sisa import SIDECAR, forget_sisa
        from unlearn_cli.methods._shared import progress_hook

        done = forget_sisa(request.checkpoint, request.dataset, request.forget_rows, None, device=request.device,
                           progress=progress_hook(request, "retrain"), warn=request.warn, retrain_all=True)
        method_s = time.perf_counter() - t0
        return Outcome(state=done.state, metrics={"trained_on": int(len(request.retain_rows)), **done.report},
                       timings={"train_s": method_s, "method_s": method_s}, meta_updates={"sisa": done.meta},
                       sidecars={SIDECAR: done.slice_states})

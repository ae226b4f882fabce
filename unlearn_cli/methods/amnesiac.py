"""Amnesiac ML (Graves, Nagisetty, Ganesh, AAAI 2021): subtract the recorded batch updates.

Needs a checkpoint trained with ``unlearn train --track-updates``. Every batch
that held a requested record has its recorded parameter update subtracted from
the weights; optionally the model is then repaired by fine-tuning on the
remaining records. The log format is described in ``unlearn_cli/training/update_log.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from unlearn_cli.errors import BadInput
from unlearn_cli.methods.base import Method, Outcome, Request
from unlearn_cli.options import EPOCHS, LR, option


@dataclass
class AmnesiacConfig:
    repair_epochs: int = option(0, "epochs of training on the remaining records after subtracting (Graves et al.'s "
                                "repair); 0 = pure subtraction, as compared in the PUMA paper",
                                ge=0, le=EPOCHS["le"])
    repair_lr: Optional[float] = option(None, "learning rate of the repair; unset = the recorded recipe's", **LR)


class Amnesiac(Method):
    name = "amnesiac"
    summary = "subtract the recorded updates of every batch that held a requested record (Graves et al. 2021)"
    details = (
        "Needs a checkpoint trained with --track-updates (its sidecar holds every step's parameter update and "
        "the batch's record positions). Amnesiac ML cannot take one record's share out of a batch update, so "
        "every batch (in every epoch) that held a requested record is subtracted whole: the other records of "
        "those batches lose their updates too. Cheap when the requested records sat in few batches (the "
        "PUMA paper's Ordered scenario: see unlearn mark --strategy ordered); with records spread over random "
        "batches it removes a large share of all updates and usually destroys the model (PUMA Table 1), which "
        "repair_epochs of training on the remaining records can partly undo. The report gives the sidecar's "
        "size and how many batches were removed. The output carries the log with the removed batches zeroed, "
        "so later requests can subtract further batches (approximate once repair updates, which are not "
        "logged, have been applied)."
    )
    requires = "update-log"
    needs_recipe = True
    Config = AmnesiacConfig

    def forget(self, request: Request, config: AmnesiacConfig) -> Outcome:
        import numpy as np

        from unlearn_cli.methods._shared import own_sidecar
        from unlearn_cli.training.update_log import SIDECAR, batches_holding, check_log, pruned_log, subtract

        ckpt = request.checkpoint
        t0 = time.perf_counter()
        path, log = own_sidecar(ckpt, SIDECAR)
        if log is None:
            shown = path.name if path is not None else f"<sha256[:16]>.{SIDECAR}.safetensors"
            raise BadInput(f"update log sidecar {shown} is missing or belongs to another checkpoint; it is written "
                           "beside the checkpoint by: unlearn train MANIFEST --track-updates --out CKPT")
        steps = check_log(log, ckpt.state)
        sidecar_bytes = path.stat().st_size
        t_load = time.perf_counter() - t0

        train_rows = request.dataset.train_indices()
        positions = np.searchsorted(train_rows, request.forget_rows)
        hit = batches_holding(log, positions)
        already = log["removed"].numpy()
        now = hit & ~already
        state = subtract(ckpt.state, log, now)
        t_sub = time.perf_counter() - t0 - t_load
        pos = log["positions"].numpy()
        collateral = np.setdiff1d(np.unique(pos[now][pos[now] >= 0]), positions)
        metrics = {
            "sidecar_bytes": int(sidecar_bytes),
            "batches_total": int(steps),
            "batches_removed": int(now.sum()),
            "batches_holding_request": int(hit.sum()),
            "batches_removed_earlier": int(already.sum()),
            "fraction_of_updates_removed": float(now.sum() / max(steps, 1)),
            "other_records_in_removed_batches": int(len(collateral)),
            "repair_epochs": int(config.repair_epochs),
        }
        timings = {"load_log_s": t_load, "subtract_s": t_sub}
        if config.repair_epochs > 0:
            state = self._repair(request, config, state, timings)
        timings["method_s"] = time.perf_counter() - t0
        log_meta = dict(ckpt.meta.get("update_log") or {})
        log_meta["removed_batches"] = int((already | hit).sum())
        if config.repair_epochs > 0:
            log_meta["unlogged_repair_epochs"] = int(log_meta.get("unlogged_repair_epochs", 0)) + config.repair_epochs
        return Outcome(state=state, metrics=metrics, timings=timings, meta_updates={"update_log": log_meta},
                       sidecars={SIDECAR: pruned_log(log, hit)})

    def _repair(self, request: Request, config: AmnesiacConfig, state: dict, timings: dict) -> dict:
        from dataclasses import replace

        from unlearn_cli.models.registry import build
        from unlearn_cli.training.loop import Recipe, train_model
        from unlearn_cli.methods._shared import progress_hook, rows_xy, snapshot

        t0 = time.perf_counter()
        recipe = Recipe.from_dict(request.checkpoint.training)
        recipe = replace(recipe, epochs=int(config.repair_epochs), seed=int(request.seed),
                         lr=config.repair_lr if config.repair_lr is not None else recipe.lr)
        model = build(request.checkpoint.arch)
        model.load_state_dict(state)
        x, y = rows_xy(request, request.retain_rows)
        train_model(model.to(request.device), x, y, recipe, device=request.device,
                    progress=progress_hook(request, "repair"))
        timings["repair_s"] = time.perf_counter() - t0
        return snapshot(model)

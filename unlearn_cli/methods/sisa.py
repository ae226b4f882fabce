"""SISA unlearning (Bourtoule et al., IEEE S&P 2021): retrain only the affected constituents.

Needs a checkpoint trained with ``unlearn train --sisa-shards S --sisa-slices R``.
The shard/slice of every record is in the checkpoint's ``sisa.assignment``;
the state of every constituent after every slice is in the ``sisa-slices``
sidecar. The heavy lifting is in ``unlearn_cli/training/sisa.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearn_cli.methods.base import Method, Outcome, Request


@dataclass
class SisaConfig:
    """No options: shards, slices, epochs per slice and seeds are fixed by the SISA checkpoint."""


class Sisa(Method):
    name = "sisa"
    summary = "retrain only the shards holding the records, from the last slice state before them (Bourtoule et al. 2021)"
    details = (
        "Exact unlearning for SISA ensembles (train one with unlearn train MANIFEST --sisa-shards S "
        "--sisa-slices R [--sisa-aggregate vote|mean]). Training: records are split uniformly at random into S "
        "shards of R slices; constituent i trains on slice 0, then slices 0..1, ..., each step for about "
        "2e/(R+1) epochs (e = the recipe's epochs; the reference implementation's split, so slicing costs the "
        "same as e epochs on the whole shard) with a fresh optimizer, and its state after every slice is saved "
        "in the sisa-slices sidecar. Prediction is the constituents' majority vote (or mean softmax). "
        "Forgetting: each constituent whose shard holds a requested record is retrained "
        "from its state saved after the slice before the earliest slice holding one, on its remaining slices, "
        "with the same seeds and epochs per slice as in training; other constituents are copied unchanged "
        "(byte-identical). The result equals training the affected shards from scratch without those records. "
        "Cost: one shard's share of the training for every shard touched (the report lists shards and slices "
        "retrained), so requests spread over many shards cost close to a full retrain, and a shard that loses "
        "all its records drops out of the vote. The new slice states are written as the output's sidecar, so "
        "further requests work; without the input's sidecar affected shards restart from slice 0 (still exact)."
    )
    requires = "sisa"
    needs_recipe = True
    Config = SisaConfig

    def forget(self, request: Request, config: SisaConfig) -> Outcome:
        from unlearn_cli.methods._shared import own_sidecar, progress_hook
        from unlearn_cli.training.sisa import SIDECAR, forget_sisa

        ckpt = request.checkpoint
        t0 = time.perf_counter()
        _, slice_states = own_sidecar(ckpt, SIDECAR)
        if slice_states is None:
            request.warn(f"sidecar '{SIDECAR}' of {ckpt.path.name if ckpt.path else 'the checkpoint'} is missing "
                         "or does not match; affected shards are retrained from slice 0")
        t_load = time.perf_counter() - t0
        done = forget_sisa(ckpt, request.dataset, request.forget_rows, slice_states, device=request.device,
                           progress=progress_hook(request, "sisa"), warn=request.warn)
        method_s = time.perf_counter() - t0
        metrics = {**done.report, "slice_states_found": slice_states is not None}
        sidecars = {SIDECAR: done.slice_states} if done.slice_states else {}
        return Outcome(state=done.state, metrics=metrics,
                       timings={"load_slices_s": t_load, "retrain_s": method_s - t_load, "method_s": method_s},
                       meta_updates={"sisa": done.meta}, sidecars=sidecars)

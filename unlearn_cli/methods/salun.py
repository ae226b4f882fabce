"""SalUn: saliency-based unlearning (Fan, Liu, Zhang, Wei, Wong, Liu, ICLR 2024), classification.

1. Weight saliency: the gradient of the forget loss (mean cross-entropy on the
   forget records) at the original weights; the mask keeps the top
   ``sparsity`` fraction of |gradient| over all weights and biases together
   (the authors' ``generate_mask.py``: one global ranking, ``with_0.5`` = half
   of the weights).
2. Random labelling (RL) restricted to the salient weights: fine-tune on the
   forget records with random wrong labels (y' != y, the paper's equation;
   drawn once, seeded) together with the remaining records with their labels,
   in one shuffled stream (the authors' ``RL.py``), SGD with momentum and
   weight decay.

Only salient weights may change: gradients of the others are masked, and after
every step they are restored bit for bit from the original and their momentum
is cleared, so neither weight decay nor momentum leaks into them. BatchNorm
running statistics are not weights and follow the data as in the authors' code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearn_cli.errors import BadInput
from unlearn_cli.methods._shared import FineTuning
from unlearn_cli.methods.base import Request
from unlearn_cli.options import BATCH_SIZE, EPOCHS, LR, MOMENTUM, WEIGHT_DECAY, option


@dataclass
class SalunConfig:
    sparsity: float = option(0.5, "share of weights in the saliency mask (top |grad| of the forget loss); paper: 0.5",
                             gt=0, le=1)
    lr: float = option(0.013, "SGD learning rate; authors' README (CIFAR-10 random forgetting): 0.013", **LR)
    epochs: int = option(10, "epochs over forget + remaining records; authors' README: 10", **EPOCHS)
    batch_size: int = option(256, "batch size; authors' code: 256", **BATCH_SIZE)
    momentum: float = option(0.9, "SGD momentum; authors' code: 0.9", **MOMENTUM)
    weight_decay: float = option(5e-4, "SGD weight decay (salient weights only); authors' code: 5e-4",
                                 **WEIGHT_DECAY)


def saliency_mask(model, x, y, sparsity: float, chunk: int = 1024) -> dict:
    """Top-``sparsity`` mask of |d mean CE(forget) / d theta| over all parameters (bool per parameter)."""
    import torch
    from torch.nn import functional as F

    model.eval()
    params = dict(model.named_parameters())
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    n = len(x)
    for i in range(0, n, chunk):
        loss = F.cross_entropy(model(x[i : i + chunk]), y[i : i + chunk], reduction="sum") / n
        for k, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                grads[k] += g
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = int(len(flat) * sparsity)
    ranks = torch.empty_like(flat, dtype=torch.long)
    ranks[torch.argsort(-flat, stable=True)] = torch.arange(len(flat), device=flat.device)
    masks, start = {}, 0
    for k, g in grads.items():
        masks[k] = (ranks[start : start + g.numel()] < keep).reshape(g.shape)
        start += g.numel()
    return masks


def random_wrong_labels(y, num_classes: int, seed: int):
    """Uniform over the other classes: y' != y."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    shift = torch.randint(1, num_classes, (len(y),), generator=gen)
    return (y.cpu() + shift) % num_classes


class Salun(FineTuning):
    name = "salun"
    summary = "random-label fine-tuning restricted to the weights most salient to the forget loss (Fan et al. 2024)"
    details = (
        "SalUn (ICLR 2024), classification variant. The saliency mask keeps the top `sparsity` (0.5) of all "
        "weights ranked by |gradient of the forget loss| at the original model; then the model is fine-tuned "
        "on the forget records with random wrong labels plus the remaining records with their own labels "
        "(SGD lr 0.013, momentum 0.9, weight decay 5e-4, 10 epochs, batch 256: the authors' settings), "
        "updating only masked weights: the others are restored bit for bit after every step and carry no "
        "momentum or weight decay. Works for sample-level and class-level requests; random labels drive "
        "forget accuracy below what a retrained model would show (retrain still generalises to those "
        "records), which a membership attack can notice. On two-class data the wrong label is always the other class and, on a "
        "model that already fits its data, the relabelled records dominate the gradient: large requests act "
        "as label noise and cost test accuracy (benchmarks/results/methods_table.md). Cost: `epochs` passes "
        "over the training set."
    )
    Config = SalunConfig

    def edit(self, request: Request, config: SalunConfig, t0: float) -> tuple[dict, dict, dict]:
        import torch

        from unlearn_cli.methods._shared import fine_tune, load_model, rows_xy, sgd_for, snapshot

        classes = int(request.dataset.num_classes)
        if classes < 2:
            raise BadInput("salun needs at least two classes to draw wrong labels")
        model = load_model(request)
        xf, yf = rows_xy(request, request.forget_rows)
        masks = saliency_mask(model, xf, yf, config.sparsity)
        t_mask = time.perf_counter() - t0

        xr, yr = rows_xy(request, request.retain_rows)
        y_random = random_wrong_labels(yf, classes, request.seed).to(yf.device)
        x = torch.cat([xf, xr])
        y = torch.cat([y_random, yr])
        params = dict(model.named_parameters())
        original = {k: p.detach().clone() for k, p in params.items()}
        optimizer = sgd_for(model, config)
        hooks = [p.register_hook(lambda g, m=masks[k]: g * m) for k, p in params.items()]

        def restore() -> None:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(torch.where(masks[k], p, original[k]))
                    buf = optimizer.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(masks[k])

        try:
            fine_tune(request, model, x, y, config, "salun", optimizer=optimizer, after_step=restore)
        finally:
            for h in hooks:
                h.remove()
        method_s = time.perf_counter() - t0
        total = sum(m.numel() for m in masks.values())
        salient = sum(int(m.sum()) for m in masks.values())
        metrics = {
            "salient_weights": salient,
            "weights": total,
            "salient_share_per_tensor": {k: float(m.float().mean()) for k, m in masks.items()},
            "forget_records_relabelled": int(len(yf)),
        }
        return snapshot(model), metrics, {"mask_s": t_mask, "finetune_s": method_s - t_mask, "method_s": method_s}

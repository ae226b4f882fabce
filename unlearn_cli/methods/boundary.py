"""Boundary Unlearning (Chen, Gao, Liu, Peng, Wang, CVPR 2023): Boundary Shrink and Boundary Expanding.

Both shift the decision boundary instead of scrubbing parameters, and both
fine-tune on the forget records only, with the settings of the authors' code:
SGD, learning rate 1e-5, momentum 0.9, 10 epochs ("for the fine-tune process in
Boundary Unlearning we use a learning rate of 1e-5 for 10 epochs"), forget
batches of 64.

Boundary Shrink: each forget record's *nearest but incorrect* label is found by
a one-step FGSM neighbour search on the original model,
``x' = x + bound * sign(grad_x CE(f(x), y))`` with ``bound = 0.1``, taking
``argmax f(x')`` (as in the authors' code this may still be ``y`` when the step
does not cross a boundary; the report gives the share that did). The model is
then fine-tuned to predict those labels on the unperturbed records.

Boundary Expanding: one shadow class is added to the output layer (its row
freshly initialised, the others copied), the widened model is fine-tuned to
put every forget record into the shadow class, and the shadow row is pruned,
so the checkpoint keeps its architecture and output size.

The neighbour search works in the model's input space. For ``scale255`` data
(pixels in [0, 1]) the perturbed input is clamped to [0, 1] and rounded to
1/255 steps as in the authors' code; for ``minmax`` data it is clamped to
[0, 1]; for standardised features ``bound`` is in standard deviations and
nothing is clamped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unlearn_cli.errors import BadInput
from unlearn_cli.methods._shared import FineTuning
from unlearn_cli.methods.base import Request
from unlearn_cli.options import BATCH_SIZE, EPOCHS, LR, MOMENTUM, option

SMALL_DATA_NOTE = (
    " The fine-tuning budget is counted in epochs over the forget records: a class of a few hundred records "
    "gets ~60 SGD steps at lr 1e-5, where a CIFAR-10 class (5,000 images, the paper's setting) gets ~790, so on "
    "small data sets the defaults barely move the model; raise lr (e.g. --set lr=1e-4)."
)

SAMPLE_LEVEL_NOTE = (
    "Designed for removing a whole class. A sample-level request (a cluster, random records) works, but "
    "fine-tuning only on the forget records moves the boundary for everything near them: expect forget "
    "accuracy well below retrain's (retrain still generalises to such records) and some loss on retained "
    "and test records of the same classes."
)


@dataclass
class ShrinkConfig:
    # bound: inputs are pixels in [0, 1] or standardised features, so a step beyond 1e3 leaves the data
    bound: float = option(0.1, "FGSM neighbour-search step (L-inf bound) in input units; authors' code: 0.1",
                          gt=0, le=1e3)
    lr: float = option(1e-5, "fine-tune learning rate (SGD); paper: 1e-5", **LR)
    epochs: int = option(10, "fine-tune epochs over the forget records; paper: 10", **EPOCHS)
    momentum: float = option(0.9, "SGD momentum; authors' code: 0.9", **MOMENTUM)
    batch_size: int = option(64, "forget-record batch size; authors' code: 64", **BATCH_SIZE)


@dataclass
class ExpandConfig:
    lr: float = option(1e-5, "fine-tune learning rate (SGD); paper: 1e-5", **LR)
    epochs: int = option(10, "fine-tune epochs over the forget records; paper: 10", **EPOCHS)
    momentum: float = option(0.9, "SGD momentum; authors' code: 0.9", **MOMENTUM)
    batch_size: int = option(64, "forget-record batch size; authors' code: 64", **BATCH_SIZE)


def _class_summary(request: Request, y_forget) -> dict:
    """Which classes the request covers, and whether it removes any class entirely."""
    import numpy as np

    from unlearn_cli.methods._shared import per_class_counts

    ds = request.dataset
    classes = np.unique(y_forget)
    whole = [int(c) for c in classes if not np.any(ds.y[request.retain_rows] == c)]
    if not whole:
        request.warn("boundary unlearning is designed for removing a whole class; this request removes "
                     "records without emptying a class (see `unlearn methods boundary-shrink`)")
    return {"forget_classes": per_class_counts(y_forget, ds.num_classes), "whole_classes_removed": whole}


def neighbour_labels(model, x, y, bound: float, domain: str, chunk: int = 512):
    """Nearest-but-incorrect labels by one FGSM step on the (frozen) original model."""
    import torch
    from torch.nn import functional as F

    model.eval()
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[i : i + chunk])
        (grad,) = torch.autograd.grad(loss, xb)
        x_adv = xb.detach() + bound * grad.sign()
        if domain in ("scale255", "minmax"):
            x_adv = x_adv.clamp(0.0, 1.0)
        if domain == "scale255":
            x_adv = torch.round(x_adv * 255) / 255
        with torch.no_grad():
            out.append(model(x_adv).argmax(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def widen_output(ckpt, seed: int):
    """The checkpoint's architecture rebuilt with one more class: every tensor copied, the extra output row
    initialised from ``seed``. Returns (module, original class count, names of the widened tensors)."""
    import torch

    from unlearn_cli.models.registry import build

    kwargs = dict(ckpt.arch.get("kwargs", {}))
    if "num_classes" not in kwargs:
        raise BadInput(f"boundary-expand needs an architecture built with num_classes; "
                       f"'{ckpt.arch.get('name')}' records none")
    classes = int(kwargs["num_classes"])
    torch.manual_seed(seed)
    wide = build({"name": ckpt.arch["name"], "kwargs": {**kwargs, "num_classes": classes + 1}})
    widened = []
    for k, w in wide.state_dict().items():
        o = ckpt.state.get(k)
        if o is None:
            raise BadInput(f"boundary-expand: widened architecture has tensor '{k}' the checkpoint lacks")
        if tuple(w.shape) == tuple(o.shape):
            w.copy_(o)
        elif w.shape[0] == classes + 1 and tuple(w.shape[1:]) == tuple(o.shape[1:]) and o.shape[0] == classes:
            w[:classes].copy_(o)
            widened.append(k)
        else:
            raise BadInput(f"boundary-expand: cannot widen tensor '{k}' {list(o.shape)} -> {list(w.shape)}")
    if not widened:
        raise BadInput(f"boundary-expand: architecture '{ckpt.arch['name']}' has no output layer sized by num_classes")
    return wide, classes, widened


class BoundaryShrink(FineTuning):
    name = "boundary-shrink"
    summary = "relabel forget records to their nearest wrong class (FGSM) and fine-tune (Chen et al. 2023)"
    details = (
        "Boundary Shrink (CVPR 2023). A one-step FGSM search (bound 0.1) on the original model finds each forget "
        "record's nearest-but-incorrect label; the model is fine-tuned on the forget records with those labels "
        "(SGD lr 1e-5, momentum 0.9, 10 epochs, batches of 64: the paper's and its code's settings), so the "
        "forgotten class's region is split among its neighbours. Only the forget records are used. "
        + SAMPLE_LEVEL_NOTE + SMALL_DATA_NOTE
        + " The bound is in input units: 0.1 of the pixel range is a large step on CIFAR-10 images but moves "
        "only about a fifth of MNIST digits to another label (the report's neighbour_differs; the others are "
        "fine-tuned on their own label); MNIST's usual FGSM budget is 0.3. On mnist-5k (default CNN, one digit "
        "removed) the defaults leave 90% of that digit's test images recognised; bound=0.3 with lr=1e-4 leaves "
        "0% with the other digits unchanged."
    )
    Config = ShrinkConfig

    def edit(self, request: Request, config: ShrinkConfig, t0: float) -> tuple[dict, dict, dict]:
        from unlearn_cli.methods._shared import fine_tune, load_model, per_class_counts, rows_xy, snapshot

        x, y = rows_xy(request, request.forget_rows)
        original = load_model(request)
        nbi = neighbour_labels(original, x, y, config.bound, request.dataset.normalize)
        t_search = time.perf_counter() - t0
        model = load_model(request)
        fine_tune(request, model, x, nbi, config, self.name)
        method_s = time.perf_counter() - t0
        metrics = {
            **_class_summary(request, y.cpu().numpy()),
            "neighbour_labels": per_class_counts(nbi.cpu().numpy(), request.dataset.num_classes),
            "neighbour_differs": float((nbi != y).float().mean()) if len(y) else 0.0,
            "input_domain": request.dataset.normalize,
        }
        return snapshot(model), metrics, {"search_s": t_search, "finetune_s": method_s - t_search, "method_s": method_s}


class BoundaryExpand(FineTuning):
    name = "boundary-expand"
    summary = "fine-tune forget records into an extra shadow class, then prune it (Chen et al. 2023)"
    details = (
        "Boundary Expanding (CVPR 2023). The output layer gets one extra shadow class (the architecture is "
        "rebuilt with num_classes + 1, every tensor copied, the new row freshly initialised from the seed); "
        "the widened model is fine-tuned to put every forget record into the shadow class (SGD lr 1e-5, "
        "momentum 0.9, 10 epochs, batches of 64: the paper's and its code's settings); then the shadow row is "
        "pruned, so the checkpoint keeps its original architecture and output size. Needs an architecture "
        "whose builder takes num_classes (all built-in ones do). "
        + SAMPLE_LEVEL_NOTE + SMALL_DATA_NOTE
        + " On mnist-5k (default CNN, one digit removed) the defaults leave 34% of that digit's test images "
        "recognised; lr=1e-4 leaves 0% with the other digits within 0.3 points; lr=1e-3 also 0% but costs "
        "the other digits 10 points."
    )
    Config = ExpandConfig

    def edit(self, request: Request, config: ExpandConfig, t0: float) -> tuple[dict, dict, dict]:
        import torch

        from unlearn_cli.methods._shared import fine_tune, rows_xy

        wide, classes, widened = widen_output(request.checkpoint, int(request.seed))
        x, y = rows_xy(request, request.forget_rows)
        shadow = torch.full_like(y, classes)
        wide = wide.to(request.device)
        fine_tune(request, wide, x, shadow, config, self.name)
        with torch.no_grad():
            shadow_share = float((wide(x).argmax(1) == classes).float().mean()) if len(x) else 0.0
        state = {k: (v[:classes] if k in widened else v).detach().cpu().clone() for k, v in wide.state_dict().items()}
        method_s = time.perf_counter() - t0
        metrics = {**_class_summary(request, y.cpu().numpy()), "shadow_class": classes,
                   "pruned_tensors": widened, "forget_in_shadow_class_before_pruning": shadow_share}
        return state, metrics, {"finetune_s": method_s, "method_s": method_s}

"""The ``kfold`` ranker: cleanlab's recipe, k models of the checkpoint's own architecture and recipe.

Each model trains on k-1 stratified folds of the train split and predicts the
fold it did not see; a record's score is that out-of-fold p(given label),
lowest first. It costs k trainings, so it runs only when asked (``--ranker
kfold``); the default ``loo`` ranker gets out-of-sample evidence without them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from unlearn_cli.diagnostics.rankers import Ranker, given_confidence
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.progress import Counter


class KFold(Ranker):
    """cleanlab's recipe: out-of-fold p(given label) from k models of the checkpoint's architecture and recipe."""

    name = "kfold"
    summary = "k models trained without one fold each (the checkpoint's recipe); out-of-fold p(given label)"
    score = "out-of-fold p(given label)"
    needs_plain = True
    costly: ClassVar[bool] = True
    order = 90

    def rank(self, given):
        import torch

        from unlearn_cli.data.tensors import tensors
        from unlearn_cli.training.fit import fit
        from unlearn_cli.training.loop import Recipe

        ckpt, rows, s = given.checkpoint, given.rows, given.settings
        if not ckpt.training:
            raise BadInput("--ranker kfold retrains the checkpoint's recipe, and this checkpoint records none "
                           "(imported without --recipe)")
        labels = given.dataset.y[rows]
        folds = stratified_folds(labels, s.folds, s.seed)
        probs = np.zeros_like(given.probs)
        tick = Counter(given.progress, "folds", s.folds)
        recipe = Recipe.from_dict(ckpt.training)
        for fold in range(s.folds):
            held = folds == fold
            model, _ = fit(given.dataset, rows[~held], ckpt.arch, recipe, device=given.device)
            model.eval()
            x, _ = tensors(given.dataset, rows[held], given.device)
            with torch.no_grad():
                probs[held] = torch.softmax(model(x).double(), 1).cpu().numpy()
            tick()
        score = given_confidence(probs, labels)
        return score, np.argsort(score, kind="stable"), {"folds": s.folds, "oos_probs": probs}


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per record: each class dealt round-robin over k folds in a seeded order."""
    if len(labels) < k:
        raise BadInput(f"--folds {k} needs at least {k} train records, got {len(labels)}")
    rng = np.random.default_rng([int(seed), 12])
    folds = np.empty(len(labels), dtype=np.int64)
    start = 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        folds[members] = (np.arange(len(members)) + start) % k
        start += len(members)
    return folds

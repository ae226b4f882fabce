"""The record sets PUMA measures on: where C is taken, and the unseen records a removal is checked against.

* The criterion set (C, grad C and the preservation check, one set for all
  three so that lambda cancels the change the check measures): the
  manifest's ``splits.validation`` (held out, never trained on) when it has
  one, else a seeded sample of the remaining train records (Algorithm 1's
  D_tn). Over training records at a trained optimum grad C is close to
  -wd*theta plus optimiser noise, which is why a validation split is preferred.
* The removal check: after the removal the forgotten records should be
  predicted about as a model trained without them would predict them. That
  model is not available (it is what PUMA saves the cost of), so it is
  estimated without training: each forgotten record's k = 5 nearest remaining
  train records (Euclidean, in the model's normalised input space) vote, and
  the vote's accuracy and mean share for the true class stand for the retrained
  model's forget-set accuracy and confidence. On the shipped sets' cluster
  removals this estimate lands within 0.1 of retraining's forget accuracy on
  most markings (benchmarks/results/puma_clusters.md) and never needs a model.
  The vote is weaker than the model where the classes are not separable by
  distance, so it is rescaled by the model's accuracy (and confidence) on
  held-out records (validation, else test) over the same vote's on them: a
  random removal from a model that generalises then expects test-level
  accuracy, a removed cluster that its neighbours outvote expects little.
  The check fails when PUMA's forget accuracy or mean true-class confidence
  exceeds the estimate by more than ``removal_margin``. Above
  ``VOTE_POOL`` (20,000) remaining records the voters are a seeded sample of
  that many, so the check costs the same at any n (both the forget-set and
  the held-out vote use the same sample, so the rescaling still compares like
  with like); the shipped sets are far below it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unlearn_cli.errors import BadInput


def criterion_rows(request: Any, config: Any, engine: Any) -> tuple[np.ndarray, str]:
    """The criterion set's rows and where they come from ("validation" or "remaining")."""
    validation = request.dataset.validation_indices()
    choice = config.criterion_split
    if choice == "validation" and not len(validation):
        raise BadInput("criterion_split=validation but the manifest has no splits.validation")
    if choice == "validation" or (choice == "auto" and len(validation)):
        return engine.sample(validation, config.check_sample, salt=2), "validation"
    return engine.sample(request.retain_rows, config.check_sample, salt=2), "remaining"


def _accuracy_and_confidence(engine: Any, params: Any, rows: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean true-class probability on ``rows`` at ``params``: one forward pass."""
    x, y = engine.rows(rows)
    with torch.no_grad():
        probs = torch.softmax(engine.fmodel(params, x), 1)
    return float((probs.argmax(1) == y).float().mean()), float(probs.gather(1, y[:, None]).mean())


NEIGHBOURS = 5
HELDOUT_SAMPLE = 500   # held-out records the vote is scored on (its rescaling)
VOTE_POOL = 20_000     # remaining records that vote, at most (a seeded sample above it)


def knn_vote(dataset: Any, rows: np.ndarray, pool_rows: np.ndarray, k: int = NEIGHBOURS) -> tuple[float, float]:
    """(accuracy, mean true-class share) of a vote of each row's k nearest ``pool_rows`` (Euclidean)."""
    flat = dataset.x.reshape(dataset.n, -1)

    def features(r: np.ndarray) -> torch.Tensor:  # only the rows asked for: no copy of the whole set
        return torch.from_numpy(np.ascontiguousarray(flat[r], dtype=np.float32))

    y = dataset.y
    k = min(k, len(pool_rows))
    pool, pool_y = features(pool_rows), y[pool_rows]
    votes = []
    for start in range(0, len(rows), 256):  # bounded memory: 256 x pool distances at a time
        chunk = rows[start:start + 256]
        nearest = torch.cdist(features(chunk), pool).topk(k, largest=False).indices.numpy()
        votes.append(pool_y[nearest])
    labels = np.concatenate(votes) if votes else np.zeros((0, k), dtype=np.int64)
    truth = y[rows]
    counts = np.stack([(labels == c).sum(1) for c in range(dataset.num_classes)], 1)
    return float((counts.argmax(1) == truth).mean()), float((labels == truth[:, None]).mean(1).mean())


def retrain_estimate(dataset: Any, forget_rows: np.ndarray, remaining_rows: np.ndarray,
                     heldout_rows: np.ndarray | None = None, model_heldout: tuple[float, float] | None = None
                     ) -> dict[str, Any]:
    """The retrained model's forget-set (accuracy, confidence), estimated by the remaining records' vote.

    The vote on the forgotten records says how they look from the data that is left. Where held-out
    records and the model's accuracy and confidence on them are given, the vote is rescaled by how the
    model compares with the same vote on those held-out records (a model that generalises better than
    the vote predicts unseen records better too), capped at 1.
    """
    voters = len(remaining_rows)
    if voters > VOTE_POOL:
        remaining_rows = np.sort(np.random.default_rng(7).choice(remaining_rows, VOTE_POOL, replace=False))
    acc, share = knn_vote(dataset, forget_rows, remaining_rows)
    out = {"method": f"{NEIGHBOURS} nearest remaining records", "voters": len(remaining_rows),
           "remaining": voters, "vote_accuracy": acc, "vote_confidence": share,
           "accuracy": acc, "confidence": share}
    if heldout_rows is not None and len(heldout_rows) and model_heldout is not None:
        h_acc, h_share = knn_vote(dataset, heldout_rows, remaining_rows)
        out.update(heldout_vote_accuracy=h_acc, heldout_vote_confidence=h_share,
                   accuracy=min(1.0, acc * model_heldout[0] / max(h_acc, 1e-6)),
                   confidence=min(1.0, share * model_heldout[1] / max(h_share, 1e-6)))
    return out


def _heldout(dataset: Any) -> tuple[np.ndarray, str | None]:
    rows = dataset.validation_indices()
    if len(rows):
        return rows, "validation"
    rows = dataset.test_indices()
    return rows, ("test" if len(rows) else None)


def removal_target(request: Any, engine: Any) -> dict[str, Any]:
    """The retrained model's forget-set accuracy and confidence, estimated (module docstring)."""
    heldout, source = _heldout(request.dataset)
    model_heldout = None
    if source is not None:
        heldout = engine.sample(heldout, HELDOUT_SAMPLE, salt=5)
        model_heldout = _accuracy_and_confidence(engine, engine.fmodel.params, heldout)
    estimate = retrain_estimate(request.dataset, request.forget_rows, request.retain_rows, heldout, model_heldout)
    estimate["heldout_from"] = source
    return estimate


def removal_check(request: Any, config: Any, engine: Any, params: Any, estimate: dict[str, Any]) -> dict[str, Any]:
    """The forgotten records after the removal against the retrained model's estimate (module docstring)."""
    _, before = _accuracy_and_confidence(engine, engine.fmodel.params, request.forget_rows)
    accuracy, after = _accuracy_and_confidence(engine, params, request.forget_rows)
    margin = config.removal_margin
    return {"forget_accuracy": accuracy, "forget_confidence_before": before, "forget_confidence": after,
            "retrain_estimate": estimate, "margin": margin,
            "met": bool(accuracy <= estimate["accuracy"] + margin and after <= estimate["confidence"] + margin)}

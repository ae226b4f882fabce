"""Finding mislabelled training records, and the paper's protocol for judging how well a ranker does it.

``rank`` orders the whole train split with one ranker (``rankers.py``: PUMA's
Algorithm 2 and the baselines it is compared with), most suspicious first.
``evaluate`` runs the paper's protocol (Figure 4 / Table 3): flip the labels
of a share of the train split, train, rank, and count the share of flipped
records found after inspecting 5, 10, 20, 30, 50% of the data.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from unlearn_cli.diagnostics.rankers import RankInput, RankSettings, check_ranker, given_confidence
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.progress import Counter, Progress, within

FRACTIONS = (0.05, 0.10, 0.20, 0.30, 0.50)  # shares of the data inspected, as in Figure 4


@dataclass
class Ranking:
    ranker: str
    rows: np.ndarray            # dataset rows of the train split, in data order
    score: np.ndarray           # the ranker's score for each of ``rows``
    order: np.ndarray           # positions into ``rows``, most suspicious first (a permutation)
    confidence: np.ndarray      # p(given label | x) for each of ``rows``
    predicted: np.ndarray       # predicted class for each of ``rows``
    probs: np.ndarray           # the model's class probabilities for each of ``rows``
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    oos_probs: np.ndarray | None = None  # out-of-sample class probabilities, when the ranker has them

    def ranked_rows(self) -> np.ndarray:
        return self.rows[self.order]

    def estimate(self, labels: np.ndarray) -> dict[str, Any]:
        """How many labels look wrong (``loo.estimate_issues``) and which: the first that many of the ranking.

        Counted on the ranker's out-of-sample probabilities when it has them,
        else on the model's own (in-sample: low when the model fits its flips).
        """
        from unlearn_cli.diagnostics.loo import estimate_issues

        source = "out-of-sample" if self.oos_probs is not None else "in-sample (the model's own probabilities)"
        probs = self.oos_probs if self.oos_probs is not None else self.probs
        count, _ = estimate_issues(probs, labels[self.rows])
        issue = np.zeros(len(self.rows), dtype=bool)
        issue[self.order[:count]] = True
        return {"count": count, "share": count / max(len(self.rows), 1), "probabilities": source,
                "rule": "confident joint: p_j >= mean p_j of the records labelled j, for a class j other than "
                        "the given one (cleanlab's count); the issues are the first that many of the ranking",
                "issue": issue}


def _probabilities(checkpoint: Any, dataset: Any, rows: np.ndarray, device: Any) -> np.ndarray:
    import torch

    from unlearn_cli.data.tensors import tensors
    from unlearn_cli.models.predict import load_predictor, predict_logits

    predictor = load_predictor(checkpoint, device)
    x, _ = tensors(dataset, rows, device)
    return torch.softmax(predict_logits(predictor, x).double(), 1).numpy()


def rank(ranker: str, checkpoint: Any, dataset: Any, *, device: Any = "cpu",
         settings: RankSettings | None = None, progress: Progress | None = None) -> Ranking:
    """Order the train split of ``dataset``, most suspicious first, with one ranker.

    ``progress`` (``ops.progress``) hears the ranker's passes (curvature build, psi).
    """
    chosen = check_ranker(ranker)
    settings = settings or RankSettings()
    if chosen.needs_plain and checkpoint.kind != "plain":
        raise BadInput(
            f"ranker '{ranker}' needs the weights of one model; {_name(checkpoint)} is a '{checkpoint.kind}' "
            "checkpoint (an ensemble): use --ranker self-confidence or --ranker margin"
        )
    if settings.k < 1:
        raise BadInput(f"--top must be >= 1, got {settings.k}")
    rows = dataset.train_indices()
    t0 = time.perf_counter()
    probs = _probabilities(checkpoint, dataset, rows, device)
    score, order, details = chosen().rank(RankInput(checkpoint, dataset, rows, device, settings, probs, progress))
    oos = details.pop("oos_probs", None)
    seconds = time.perf_counter() - t0
    return Ranking(ranker, rows, np.asarray(score, dtype=np.float64), np.asarray(order, dtype=np.int64),
                   given_confidence(probs, dataset.y[rows]), probs.argmax(1), probs, seconds, details, oos)


def _name(checkpoint: Any) -> str:
    return checkpoint.path.name if getattr(checkpoint, "path", None) is not None else "the checkpoint"


# -- the evaluation protocol (Figure 4 / Table 3) --------------------------------

def flip_labels(dataset: Any, rate: float, seed: int) -> tuple[Any, np.ndarray]:
    """A copy of ``dataset`` with round(rate * n_train) train labels changed to another class.

    The new class is uniform over the other classes. Features, ids and splits
    are shared with the original; its labels array is never touched.
    """
    if not 0.0 < rate < 1.0:
        raise BadInput(f"--flip-rate must be between 0 and 1 (exclusive), got {rate}")
    if dataset.num_classes < 2:
        raise BadInput(f"{dataset.name}: flipping labels needs at least two classes")
    train = dataset.train_indices()
    count = int(round(rate * len(train)))
    if count < 1:
        raise BadInput(f"--flip-rate {rate} flips no record of the {len(train)} in {dataset.name}'s train split")
    rng = np.random.default_rng([int(seed), 6])
    flipped = np.sort(rng.choice(train, size=count, replace=False))
    labels = dataset.y.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, dataset.num_classes, size=count)) % dataset.num_classes
    return dataclasses.replace(dataset, y=labels), flipped


def share_found(ranked_rows: np.ndarray, flipped: np.ndarray, fractions=FRACTIONS) -> list[float]:
    """Share of ``flipped`` among the first round(f * n) of ``ranked_rows``, for each f."""
    n = len(ranked_rows)
    hit = np.isin(ranked_rows, flipped)
    total = max(int(hit.sum()), 1)
    found = np.concatenate([[0], np.cumsum(hit)])
    return [float(found[int(round(f * n))] / total) for f in fractions]


def optimal_curve(n: int, flipped: int, fractions=FRACTIONS) -> list[float]:
    return [min(1.0, int(round(f * n)) / max(flipped, 1)) for f in fractions]


def random_curve(n: int, fractions=FRACTIONS) -> list[float]:
    """Expected share found by inspecting records in a uniformly random order."""
    return [int(round(f * n)) / n for f in fractions]


def default_arch(dataset: Any) -> str:
    return "cnn" if len(dataset.input_shape) == 3 else "mlp"


def evaluate(
    dataset: Any,
    rankers: list[str],
    *,
    flip_rate: float = 0.1,
    seed: int = 0,
    device: Any = "cpu",
    epochs: int | None = None,
    k: int | None = None,
    settings: RankSettings | None = None,
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
    progress: Progress | None = None,
    on_ranker: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The Figure 4 / Table 3 protocol on one data set; nothing is written to disk.

    Flips labels of a copy of the train split, trains the manifest's default
    recipe (mlp, or cnn for image input), ranks with each ranker and reports the
    share of flipped records found at each inspected fraction with each
    ranker's seconds, beside the optimal and random curves. ``k`` is Algorithm
    2's k (default: the number of flipped records). ``variants`` adds rankings
    under their own labels with changed settings, e.g.
    ``{"puma (C=cross-entropy)": ("puma", {"criterion": "cross-entropy"})}``.
    ``progress`` (``ops.progress``) hears the training (``train: epoch``), ``rankers``
    done of all, and each ranker's passes.
    """
    from unlearn_cli.models.predict import predict_logits
    from unlearn_cli.models.checkpoint import Checkpoint
    from unlearn_cli.training.loop import default_recipe
    from unlearn_cli.models.registry import arch_spec_for
    from unlearn_cli.training.fit import base_meta, fit
    from unlearn_cli.data.tensors import tensors

    runs = [(name, name, {}) for name in rankers]
    runs += [(label, ranker, overrides) for label, (ranker, overrides) in (variants or {}).items()]
    for _, name, _ in runs:
        check_ranker(name)
    if k is not None and k < 1:
        raise BadInput(f"--top must be >= 1, got {k}")
    if epochs is not None and epochs < 1:
        raise BadInput(f"--epochs must be >= 1, got {epochs}")
    corrupted, flipped = flip_labels(dataset, flip_rate, seed)
    train = corrupted.train_indices()
    arch = default_arch(dataset)
    spec = arch_spec_for(corrupted, arch, None, None)
    recipe = default_recipe(arch, seed=seed, epochs=epochs)
    rankers_done = Counter(progress, "rankers", len(runs))  # the total shows while the model trains
    t0 = time.perf_counter()
    model, losses = fit(corrupted, train, spec, recipe, device=device, progress=within(progress, "train"))
    train_s = time.perf_counter() - t0
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    checkpoint = Checkpoint(state, base_meta(spec, recipe, corrupted, corrupted.manifest_path), None, None)

    def accuracy(rows: np.ndarray, labels: np.ndarray) -> float | None:
        if len(rows) == 0:
            return None
        x, _ = tensors(corrupted, rows, device)
        return float((predict_logits(model, x).argmax(1).numpy() == labels[rows]).mean())

    base = dataclasses.replace(settings or RankSettings(), k=k or len(flipped), cache=False, seed=seed)
    results: dict[str, Any] = {}
    for label, name, overrides in runs:
        if on_ranker is not None:
            on_ranker(label)
        ranking = rank(name, checkpoint, corrupted, device=device, settings=dataclasses.replace(base, **overrides),
                       progress=within(progress, label))
        rankers_done()
        estimate = ranking.estimate(corrupted.y)
        results[label] = {
            "found": share_found(ranking.ranked_rows(), flipped),
            "estimated_wrong": estimate["count"],
            "seconds": ranking.seconds,
            "top_k_precision": float(np.isin(ranking.ranked_rows()[: len(flipped)], flipped).mean()),
            "info": _evaluation_info(ranking),
        }
    n = len(train)
    return {
        "dataset": dataset.name,
        "n_train": int(n),
        "flip_rate": float(flip_rate),
        "flipped": int(len(flipped)),
        "seed": int(seed),
        "arch": spec,
        "recipe": recipe.to_dict(),
        "train_s": train_s,
        "final_train_loss": losses[-1] if losses else None,
        "model": {
            "test_accuracy": accuracy(corrupted.test_indices(), dataset.y),
            "train_accuracy_given_labels": accuracy(train, corrupted.y),
            "flipped_fitted": accuracy(flipped, corrupted.y),
        },
        "k": int(base.k),
        "fractions": list(FRACTIONS),
        "optimal": optimal_curve(n, len(flipped)),
        "random": random_curve(n),
        "rankers": results,
    }


def _evaluation_info(ranking: Ranking) -> dict[str, Any]:
    keep = {}
    if "algorithm2" in ranking.info:
        keep["algorithm2"] = ranking.info["algorithm2"]
    for key in ("criterion", "orientation", "method", "bandwidth_x_median_sq_distance", "ridge"):
        if key in ranking.info:
            keep[key] = ranking.info[key]
    engine = ranking.info.get("engine")
    if engine:
        keep["solver"] = engine.get("solver")
        keep["damping"] = engine.get("damping")
        keep["parameters"] = engine.get("parameters")
    return keep

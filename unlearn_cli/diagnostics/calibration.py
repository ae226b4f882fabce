"""Calibration: the standard metrics, temperature scaling, and PUMA's Algorithm 3 (appendix E).

Metrics (``calibration_metrics``) on max-probability confidence:

* ECE: 15 equal-width bins (Guo et al. 2017; ``metrics.ece``), MCE: the
  largest bin gap, adaptive ECE: 15 equal-mass bins (Nguyen & O'Connor 2015),
  class-wise ECE: the mean over classes of the 15-bin ECE of p(c|x) against
  1[y = c] (Kull et al. 2019), NLL, Brier score (sum over classes of
  (p_c - 1[y = c])^2, averaged over records), accuracy, and the reliability
  table (lower, upper, confidence, accuracy, count per bin).

``calibrate`` runs Algorithm 3 with C = ECE (the engine's differentiable
soft-binned surrogate, criteria "ece"): psi on C for every fitting record from
the cached iHVP; L_if = the k lowest influences; L_cf / H_cf = the k least /
most confident predictions; over-confident S1 = L_if n H_cf, over-uncertain
S2 = L_if n L_cf, other-noise S3 = L_if minus both. It then calls
``influence.patch.puma_patch`` (Algorithm 1, the same function ``forget``
uses) with D_mk = S1 u S3 and D_up = S2 (Algorithm 1's sample of the other
records when S2 is empty), and picks eta on a geometric grid from 1e-1 down to
1e-5: the largest eta that lowers the binned ECE of a held-out part of the
train split without lowering its accuracy, provided the next larger grid eta
costs at most 2% held-out accuracy (the first-order model must still hold a
step beyond the one taken; without that guard the choice lands on the edge of
a cliff that the test split falls off). None qualifies: the weights are left
alone.

Equation 10's lambda keeps C unchanged to first order, so with C = ECE the
patch cannot lower ECE through the linear term alone; what it does lower is
measured, never assumed, and temperature scaling (Guo et al. 2017), fitted on
the same held-out records, is reported beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unlearn_cli.errors import BadInput
from unlearn_cli.models.predict import ECE_BINS, ece

PROB_FLOOR = 1e-12  # keeps log p finite in the NLL of a confidently wrong prediction


# -- metrics -------------------------------------------------------------------

def _bin_index(conf: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width, right-closed bins on [0, 1], the convention of ``metrics.ece``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width bin: lower, upper, mean confidence, accuracy, count (empty bins: null means)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    which = _bin_index(conf, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    for b in range(bins):
        sel = which == b
        count = int(sel.sum())
        table.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "confidence": float(conf[sel].mean()) if count else None,
            "accuracy": float(correct[sel].mean()) if count else None,
            "count": count,
        })
    return table


def max_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    gaps = [abs(row["accuracy"] - row["confidence"]) for row in reliability_table(probs, labels, bins) if row["count"]]
    return float(max(gaps)) if gaps else float("nan")


def adaptive_ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over bins holding (nearly) equal numbers of records, sorted by confidence."""
    n = len(labels)
    if n == 0:
        return float("nan")
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, n)):
        total += len(part) / n * abs(correct[part].mean() - conf[part].mean())
    return float(total)


def classwise_ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    n, classes = probs.shape
    if n == 0:
        return float("nan")
    per_class = []
    for c in range(classes):
        p = probs[:, c]
        hit = (labels == c).astype(np.float64)
        which = _bin_index(p, bins)
        total = 0.0
        for b in range(bins):
            sel = which == b
            if sel.any():
                total += sel.mean() * abs(hit[sel].mean() - p[sel].mean())
        per_class.append(total)
    return float(np.mean(per_class))


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        raise BadInput("no records to measure calibration on")
    onehot = np.eye(probs.shape[1])[labels]
    return {
        "n": int(n),
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "ece": ece(probs, labels, bins),
        "mce": max_calibration_error(probs, labels, bins),
        "adaptive_ece": adaptive_ece(probs, labels, bins),
        "classwise_ece": classwise_ece(probs, labels, bins),
        "nll": float(-np.log(np.maximum(probs[np.arange(n), labels], PROB_FLOOR)).mean()),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
        "reliability": reliability_table(probs, labels, bins),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising the NLL of softmax(logits / T) (Guo et al. 2017): a 1-D convex problem in 1/T."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise BadInput("no held-out records to fit the temperature on")

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        scaled = scaled - scaled.max(1, keepdims=True)
        return float((np.log(np.exp(scaled).sum(1)) - scaled[np.arange(len(labels)), labels]).mean())

    result = minimize_scalar(nll, bounds=(np.log(1e-2), np.log(1e2)), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


# -- Algorithm 3 ---------------------------------------------------------------

def algorithm3(influence: np.ndarray, confidence: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Positions of the over-confident (S1), over-uncertain (S2) and other-noise (S3) records.

    Confidence is the prediction's max probability, the quantity ECE bins: a
    confidently wrong prediction is over-confident, not over-uncertain.
    """
    influence = np.asarray(influence, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    n = len(influence)
    k = max(0, min(int(k), n))
    lif = np.argsort(influence, kind="stable")[:k]
    low = np.zeros(n, dtype=bool)
    low[np.argsort(confidence, kind="stable")[:k]] = True
    high = np.zeros(n, dtype=bool)
    high[np.argsort(-confidence, kind="stable")[:k]] = True
    return {
        "low_influence": lif,
        "over_confident": lif[high[lif]],
        "over_uncertain": lif[low[lif] & ~high[lif]],
        "other_noise": lif[~low[lif] & ~high[lif]],
    }


# -- the calibrate workflow ------------------------------------------------------

@dataclass
class CalibrationSettings:
    holdout: float = 0.2        # share of the train split held out to choose eta and fit the temperature
    k: int | None = None        # Algorithm 3's k; None = 10% of the fitting records
    eta: float | None = None    # fixed projection rate; None = choose on the grid
    eta_min: float = 1e-5       # the paper suggests eta <= 1e-4 for calibration; the grid brackets it
    eta_max: float = 1e-1
    eta_grid: int = 13          # geometric grid points (about 2.2x apart)
    baseline: str | None = "temperature"
    solver: str = "auto"
    damping: float = 1e-3
    reweight_sample: int = 1000  # D_up when S2 is empty: a seeded sample of the other fitting records
    cache: bool = True
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise BadInput(f"--holdout must be between 0 and 1 (exclusive), got {self.holdout}")
        if self.k is not None and self.k < 1:
            raise BadInput(f"--top must be >= 1, got {self.k}")
        if self.eta is not None and not self.eta > 0:
            raise BadInput(f"--eta must be > 0, got {self.eta}")
        if not 0 < self.eta_min <= self.eta_max:
            raise BadInput(f"need 0 < eta_min <= eta_max, got {self.eta_min}, {self.eta_max}")
        if self.baseline not in (None, "temperature"):
            raise BadInput(f"--baseline must be temperature or none, got '{self.baseline}'")
        if self.damping < 0:
            raise BadInput(f"--damping must be >= 0, got {self.damping}")


@dataclass
class CalibrationResult:
    state: dict[str, Any] | None          # calibrated weights; None when no eta helped
    metrics: dict[str, Any]               # test split: before, puma, temperature; held-out: before, puma
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def split_holdout(rows: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, held-out rows), a seeded split of ``rows``."""
    held = int(round(share * len(rows)))
    if held < 1 or held >= len(rows):
        raise BadInput(f"--holdout {share} leaves no records on one side of {len(rows)} train records")
    perm = np.random.default_rng([int(seed), 7]).permutation(rows)
    return np.sort(perm[held:]), np.sort(perm[:held])


def calibrate(checkpoint: Any, dataset: Any, *, device: Any = "cpu",
              settings: CalibrationSettings | None = None) -> CalibrationResult:
    import torch

    from unlearn_cli.influence.curvature import CurvatureSettings
    from unlearn_cli.influence.engine import InfluenceEngine
    from unlearn_cli.influence.patch import PatchSettings, puma_patch
    from unlearn_cli.influence.scores import psi

    settings = settings or CalibrationSettings()
    settings.validate()
    if checkpoint.kind != "plain":
        name = checkpoint.path.name if checkpoint.path is not None else "the checkpoint"
        raise BadInput(f"calibrate patches the weights of one model; {name} is a "
                       f"'{checkpoint.kind}' checkpoint (an ensemble)")
    test = dataset.test_indices()
    if len(test) == 0:
        raise BadInput(f"{dataset.manifest_path.name}: calibrate reports on the test split, and it is empty")
    fit_rows, held = split_holdout(dataset.train_indices(), settings.holdout, settings.seed)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    curvature = CurvatureSettings(solver=settings.solver, damping=settings.damping, seed=settings.seed)
    engine = InfluenceEngine.build(checkpoint, dataset, device=device, criterion="ece", settings=curvature,
                                   cache=settings.cache, seed=settings.seed, criterion_rows=fit_rows)
    timings["engine_s"] = time.perf_counter() - t0
    fmodel = engine.fmodel

    @torch.no_grad()
    def logits(params, rows):
        x, _ = engine.rows(rows)
        return torch.cat([fmodel(params, x[i:i + 4096]) for i in range(0, len(rows), 4096)]).double().cpu().numpy()

    def measure(params, rows):
        return calibration_metrics(softmax(logits(params, rows)), dataset.y[rows])

    t0 = time.perf_counter()
    x_fit, y_fit = engine.rows(fit_rows)
    influence = psi(fmodel, engine.objective, x_fit, y_fit, engine.v).double().cpu().numpy()
    confidence = softmax(logits(fmodel.params, fit_rows)).max(1)
    k = settings.k or max(1, int(round(0.1 * len(fit_rows))))
    sets = algorithm3(influence, confidence, k)
    timings["algorithm3_s"] = time.perf_counter() - t0
    forget = fit_rows[np.sort(np.concatenate([sets["over_confident"], sets["other_noise"]]))]
    upweight = fit_rows[np.sort(sets["over_uncertain"])]
    upweight_from = "over-uncertain"
    if len(upweight) == 0:  # Algorithm 1's default D_up: a sample of the records not removed
        rest = np.setdiff1d(fit_rows, forget)
        upweight = engine.sample(rest, settings.reweight_sample, salt=1)
        upweight_from = "sample of the other fitting records (no over-uncertain record)"

    before_test = measure(fmodel.params, test)
    before_held = measure(fmodel.params, held)
    info: dict[str, Any] = {
        "criterion": "ece",
        "k": int(k),
        "fitting_records": int(len(fit_rows)),
        "held_out_records": int(len(held)),
        "over_confident": int(len(sets["over_confident"])),
        "over_uncertain": int(len(sets["over_uncertain"])),
        "other_noise": int(len(sets["other_noise"])),
        "forget": int(len(forget)),
        "upweight": int(len(upweight)),
        "upweight_from": upweight_from,
        "engine": engine.info,
    }
    state = None
    after_test = after_held = None
    if len(forget):
        t0 = time.perf_counter()
        grid = _eta_grid(settings)
        first = puma_patch(fmodel, engine.objective, engine.criterion, engine.solver, engine.v,
                           engine.rows(forget), engine.rows(upweight), engine.rows(held),
                           PatchSettings(eta=grid[0]))
        measured = [measure(fmodel.shifted(eta * first.direction), held) for eta in grid]
        tried = {f"{eta:.3g}": {"held_out_ece": m["ece"], "held_out_accuracy": m["accuracy"]}
                 for eta, m in zip(grid, measured)}
        chosen = grid[0] if settings.eta is not None else _choose_eta(grid, measured, before_held)
        timings["eta_s"] = time.perf_counter() - t0
        info["eta_search"] = {"rule": "fixed --eta" if settings.eta is not None else
                              "largest eta lowering held-out ECE without lowering held-out accuracy, "
                              f"whose next larger grid eta costs at most {CLIFF:.0%} held-out accuracy",
                              "tried": tried}
        if chosen is not None:
            t0 = time.perf_counter()
            result = puma_patch(fmodel, engine.objective, engine.criterion, engine.solver, engine.v,
                                engine.rows(forget), engine.rows(upweight), engine.rows(held),
                                PatchSettings(eta=chosen), residual_matvec=engine.residual_matvec())
            timings["patch_s"] = time.perf_counter() - t0
            state = engine.state_with(result.params)
            after_test = measure(result.params, test)
            after_held = measure(result.params, held)
            info["patch"] = result.info
        info["eta"] = chosen
    else:
        info["eta"] = None
        info["eta_search"] = {"rule": "no record to remove: nothing to patch", "tried": {}}

    metrics: dict[str, Any] = {"test": {"before": before_test, "puma": after_test}, "held_out": {
        "before": _summary(before_held), "puma": _summary(after_held) if after_held else None}}
    if settings.baseline == "temperature":
        t0 = time.perf_counter()
        temperature = fit_temperature(logits(fmodel.params, held), dataset.y[held])
        metrics["test"]["temperature"] = calibration_metrics(softmax(logits(fmodel.params, test) / temperature),
                                                             dataset.y[test])
        metrics["temperature"] = temperature
        timings["temperature_s"] = time.perf_counter() - t0
    return CalibrationResult(state, metrics, info, timings)


CLIFF = 0.02  # held-out accuracy the next larger eta may lose: the linearisation must hold past the step taken


def _choose_eta(grid: list[float], measured: list[dict[str, Any]], before: dict[str, Any]) -> float | None:
    """Largest eta (grid descending) that lowers held-out ECE without costing held-out accuracy,
    provided the next larger grid eta does not fall off a cliff; grid[0] only guards."""
    for i in range(1, len(grid)):
        here, larger = measured[i], measured[i - 1]
        helps = here["ece"] < before["ece"] and here["accuracy"] >= before["accuracy"]
        if helps and larger["accuracy"] >= before["accuracy"] - CLIFF:
            return grid[i]
    return None


def _eta_grid(settings: CalibrationSettings) -> list[float]:
    if settings.eta is not None:
        return [float(settings.eta)]
    if settings.eta_grid < 2 or settings.eta_min == settings.eta_max:
        return [float(settings.eta_max)]
    return [float(e) for e in np.geomspace(settings.eta_max, settings.eta_min, settings.eta_grid)]


def _summary(m: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: v for k, v in m.items() if k != "reliability"}

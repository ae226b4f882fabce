"""PUMA's Algorithm 3 (appendix E): find the records that make a model mis-calibrated and patch them out.

``calibrate`` runs Algorithm 3 with C = ECE (the engine's differentiable
soft-binned surrogate, criteria "ece"): psi on C for every fitting record from
the cached iHVP; L_if = the k lowest influences; L_cf / H_cf = the k least /
most confident predictions; over-confident S1 = L_if n H_cf, over-uncertain
S2 = L_if n L_cf, other-noise S3 = L_if minus both (``algorithms.algorithm3``).
It then calls ``influence.patch.puma_patch`` (Algorithm 1, the same function
``forget`` uses) with D_mk = S1 u S3 and D_up = S2 (Algorithm 1's sample of the
other records when S2 is empty), and picks eta on a geometric grid from 1e-1
down to 1e-5: the largest eta that lowers the binned ECE of the held-out
fitting records without lowering their accuracy, provided the next larger grid
eta costs at most 2% held-out accuracy (the first-order model must still hold a
step beyond the one taken; without that guard the choice lands on the edge of
a cliff that the test split falls off). None qualifies: the weights are left
alone.

Held-out records only (``heldout.py``): C's gradient, eta and the temperature
are fitted on the manifest's validation split, or on a seeded carve-out of the
test split when there is none, and every reported number comes from records
that fit never saw. The checkpoint written holds the PUMA patch (when an eta
helped) and then the temperature refitted on the patched model, folded into
the last linear layer (``fold_temperature``), when it lowers the fitting
records' NLL; ``metrics.test.written`` measures exactly those weights.

Equation 10's lambda keeps C unchanged to first order, so with C = ECE the
patch cannot lower ECE through the linear term alone; what it does lower is
measured (``calibration_metrics.py``), never assumed, and temperature scaling
(Guo et al. 2017), fitted on the same held-out records, is reported beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Optional

import numpy as np

from unlearn_cli.diagnostics.algorithms import algorithm3
from unlearn_cli.diagnostics.calibration_metrics import calibration_metrics, softmax, temperature_or_none
from unlearn_cli.diagnostics.heldout import fold_temperature, held_out_rows
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.progress import Counter, Progress
from unlearn_cli.influence.settings import MAX_ETA, MIN_ETA, InfluenceSettings
from unlearn_cli.options import MAX_COUNT, MAX_SEED, option

LOGIT_CHUNK = 4096  # records per forward pass when measuring
#: eta grid points: each is a patch and a pass over the held-out records
MAX_GRID_POINTS = 1000


@dataclass
class CalibrationSettings(InfluenceSettings):
    """The influence settings plus Algorithm 3's; the report lists the command's own options."""

    holdout: float = option(0.5, "without a validation split: share of the test split fitted on "
                                  "(eta, temperature); the rest is reported on", gt=0, lt=1)
    k: Optional[int] = option(None, "Algorithm 3's k; unset = 10% of the fitting records", ge=1, le=MAX_COUNT)
    eta: Optional[float] = option(None, "fixed projection rate; unset = choose on the grid", ge=MIN_ETA, le=MAX_ETA)
    eta_min: float = option(1e-5, "smallest eta tried: the paper suggests eta <= 1e-4 for calibration; "
                                  "the grid brackets it", ge=MIN_ETA, le=MAX_ETA)
    eta_max: float = option(1e-1, "largest eta tried", ge=MIN_ETA, le=MAX_ETA)
    eta_grid: int = option(13, "geometric grid points (about 2.2x apart)", ge=1, le=MAX_GRID_POINTS)
    baseline: Optional[str] = option("temperature", "temperature scaling beside PUMA, or none")
    reweight_sample: int = option(1000, "D_up when S2 is empty: a seeded sample of the other fitting records",
                                  ge=0, le=MAX_COUNT)
    seed: int = option(0, "seeds the held-out split, the samples and the solvers' draws", ge=0, le=MAX_SEED)

    REPORTED: ClassVar[tuple[str, ...]] = ("holdout", "k", "eta", "eta_min", "eta_max", "eta_grid", "baseline",
                                           "solver", "damping", "reweight_sample", "cache", "seed")
    #: calibrate sets these from its flags; range errors name the flag
    FLAGS: ClassVar[Mapping[str, str]] = {"holdout": "--holdout", "k": "--top", "eta": "--eta",
                                          "damping": "--damping", "seed": "--seed"}

    def validate(self) -> None:
        """Checks across fields and of names; each number's range is declared above and checked on creation."""
        if self.eta_min > self.eta_max:
            raise BadInput(f"need eta_min <= eta_max, got {self.eta_min:g} > {self.eta_max:g}")
        if self.baseline not in (None, "temperature"):
            raise BadInput(f"--baseline must be temperature or none, got '{self.baseline}'")


@dataclass
class CalibrationResult:
    state: dict[str, Any] | None          # calibrated weights; None when no eta helped
    metrics: dict[str, Any]               # test split: before, puma, temperature; held-out: before, puma
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def calibrate(checkpoint: Any, dataset: Any, *, device: Any = "cpu",
              settings: CalibrationSettings | None = None, progress: Progress | None = None) -> CalibrationResult:
    """Algorithm 3 and PUMA's patch on one checkpoint; ``progress`` (``ops.progress``) hears the
    curvature build, the psi pass and the eta grid."""
    from unlearn_cli.influence.engine import InfluenceEngine

    settings = settings or CalibrationSettings()
    settings.validate()
    if checkpoint.kind != "plain":
        name = checkpoint.path.name if checkpoint.path is not None else "the checkpoint"
        raise BadInput(f"calibrate patches the weights of one model; {name} is a "
                       f"'{checkpoint.kind}' checkpoint (an ensemble)")
    held, test, split = held_out_rows(dataset, settings.holdout, settings.seed)
    fit_rows = dataset.train_indices()  # Algorithm 3 sorts the records the model trained on
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    engine = InfluenceEngine.build(checkpoint, dataset, device=device, criterion="ece", settings=settings,
                                   seed=settings.seed, criterion_rows=held, progress=progress)
    timings["engine_s"] = time.perf_counter() - t0
    work = _Calibration(engine, dataset, settings, fit_rows, held)

    t0 = time.perf_counter()
    info = work.sort_records()
    timings["algorithm3_s"] = time.perf_counter() - t0
    before_test = work.measure(work.fmodel.params, test)
    before_held = work.measure(work.fmodel.params, held)
    after_test, after_held, final = None, None, None
    if len(work.forget):
        chosen, patched = work.patch(before_held, info, timings)
        if patched is not None:
            final = patched.params
            after_test = work.measure(patched.params, test)
            after_held = work.measure(patched.params, held)
            info["patch"] = patched.info
        info["eta"] = chosen
    else:
        info["eta"] = None
        info["eta_search"] = {"rule": "no record to remove: nothing to patch", "tried": {}}

    metrics: dict[str, Any] = {"split": split, "test": {"before": before_test, "puma": after_test}, "held_out": {
        "before": _summary(before_held), "puma": _summary(after_held) if after_held else None}}
    if settings.baseline == "temperature":
        t0 = time.perf_counter()
        work.temperature_baseline(metrics, test)
        final = work.fold(final, info)
        timings["temperature_s"] = time.perf_counter() - t0
    state = engine.state_with(final) if final is not None else None
    if final is not None:
        metrics["test"]["written"] = work.measure(final, test)
        metrics["held_out"]["written"] = _summary(work.measure(final, held))
    return CalibrationResult(state, metrics, info, timings)


class _Calibration:
    """One calibrate run's steps on a built engine: sort the records, search eta, patch, measure."""

    def __init__(self, engine: Any, dataset: Any, settings: CalibrationSettings, fit_rows: np.ndarray,
                 held: np.ndarray):
        self.engine, self.fmodel, self.dataset, self.settings = engine, engine.fmodel, dataset, settings
        self.fit_rows, self.held = fit_rows, held
        self.forget = self.upweight = fit_rows[:0]

    def logits(self, params: Any, rows: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            x, _ = self.engine.rows(rows)
            return torch.cat([self.fmodel(params, x[i:i + LOGIT_CHUNK])
                              for i in range(0, len(rows), LOGIT_CHUNK)]).double().cpu().numpy()

    def measure(self, params: Any, rows: np.ndarray) -> dict[str, Any]:
        return calibration_metrics(softmax(self.logits(params, rows)), self.dataset.y[rows])

    def sort_records(self) -> dict[str, Any]:
        """Algorithm 3 on the fitting records: who is removed (S1 u S3), who is up-weighted (S2)."""
        from unlearn_cli.influence.scores import psi

        engine, fit_rows = self.engine, self.fit_rows
        x_fit, y_fit = engine.rows(fit_rows)
        influence = psi(self.fmodel, engine.objective, x_fit, y_fit, engine.v, progress=engine.progress)
        influence = influence.double().cpu().numpy()
        confidence = softmax(self.logits(self.fmodel.params, fit_rows)).max(1)
        k = self.settings.k or max(1, int(round(0.1 * len(fit_rows))))
        sets = algorithm3(influence, confidence, k)
        self.forget = fit_rows[np.sort(np.concatenate([sets["over_confident"], sets["other_noise"]]))]
        self.upweight = fit_rows[np.sort(sets["over_uncertain"])]
        upweight_from = "over-uncertain"
        if len(self.upweight) == 0:  # Algorithm 1's default D_up: a sample of the records not removed
            rest = np.setdiff1d(fit_rows, self.forget)
            self.upweight = engine.sample(rest, self.settings.reweight_sample, salt=1)
            upweight_from = "sample of the other fitting records (no over-uncertain record)"
        return {
            "criterion": "ece",
            "k": int(k),
            "fitting_records": int(len(fit_rows)),
            "held_out_records": int(len(self.held)),
            "over_confident": int(len(sets["over_confident"])),
            "over_uncertain": int(len(sets["over_uncertain"])),
            "other_noise": int(len(sets["other_noise"])),
            "forget": int(len(self.forget)),
            "upweight": int(len(self.upweight)),
            "upweight_from": upweight_from,
            "engine": engine.info,
        }

    def _puma_patch(self, eta: float, residual: bool = False):
        from unlearn_cli.influence.patch import puma_patch
        from unlearn_cli.influence.settings import PatchSettings

        engine = self.engine
        return puma_patch(self.fmodel, engine.objective, engine.criterion, engine.solver, engine.v,
                          engine.rows(self.forget), engine.rows(self.upweight), engine.rows(self.held),
                          PatchSettings(eta=eta), residual_matvec=engine.residual_matvec() if residual else None,
                          progress=engine.progress)

    def patch(self, before_held: dict[str, Any], info: dict[str, Any], timings: dict[str, float]):
        """(chosen eta or None, the patch at it or None): the grid walked along one direction on the held-out set."""
        t0 = time.perf_counter()
        settings = self.settings
        grid = _eta_grid(settings)
        first = self._puma_patch(grid[0])
        tick = Counter(self.engine.progress, "eta grid", len(grid))
        measured = []
        for eta in grid:
            measured.append(self.measure(self.fmodel.shifted(eta * first.direction), self.held))
            tick()
        tried = {f"{eta:.3g}": {"held_out_ece": m["ece"], "held_out_accuracy": m["accuracy"]}
                 for eta, m in zip(grid, measured)}
        chosen = grid[0] if settings.eta is not None else _choose_eta(grid, measured, before_held)
        timings["eta_s"] = time.perf_counter() - t0
        info["eta_search"] = {"rule": "fixed --eta" if settings.eta is not None else
                              "largest eta lowering held-out ECE without lowering held-out accuracy, "
                              f"whose next larger grid eta costs at most {CLIFF:.0%} held-out accuracy",
                              "tried": tried}
        if chosen is None:
            return None, None
        t0 = time.perf_counter()
        patched = self._puma_patch(chosen, residual=True)
        timings["patch_s"] = time.perf_counter() - t0
        return chosen, patched

    def temperature_baseline(self, metrics: dict[str, Any], test: np.ndarray) -> None:
        """Temperature scaling fitted on the held-out fitting records, measured on the report records."""
        params, y = self.fmodel.params, self.dataset.y
        temperature, why = temperature_or_none(self.logits(params, self.held), y[self.held])
        metrics["temperature_fit"] = why
        if temperature is None:
            return
        metrics["test"]["temperature"] = calibration_metrics(softmax(self.logits(params, test) / temperature), y[test])
        metrics["temperature"] = temperature

    def fold(self, params: Any, info: dict[str, Any]) -> Any:
        """``params`` (the patched weights, or None = the model's) with a temperature refitted on the fitting
        records folded in, when it lowers their NLL; None when nothing changed."""
        base = params if params is not None else self.fmodel.params
        y = self.dataset.y[self.held]
        logits = self.logits(base, self.held)
        temperature, why = temperature_or_none(logits, y)
        if temperature is None:
            info["written_temperature"] = {"temperature": None, "folded": False, "note": why}
            return params
        nll = calibration_metrics(softmax(logits), y)["nll"]
        nll_t = calibration_metrics(softmax(logits / temperature), y)["nll"]
        info["written_temperature"] = {"temperature": temperature, "fitting_nll_before": nll,
                                       "fitting_nll_after": nll_t, "folded": False}
        if abs(np.log(temperature)) < 1e-3 or nll_t >= nll:
            return params
        x, _ = self.engine.rows(self.held)
        folded = fold_temperature(self.fmodel, base, temperature, x)
        if folded is None:
            info["written_temperature"]["note"] = "not folded: the logits do not come straight from a linear layer"
            return params
        info["written_temperature"]["folded"] = True
        return folded


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

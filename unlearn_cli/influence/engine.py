"""The influence engine: one object that PUMA, debug-labels and calibrate share.

It holds the model as a function of its parameters, the training objective J,
the criterion C, an iHVP solver for J's curvature, and v = (H + dI)^-1 grad C
over the training records (the paper's cached "HVP"). Factorised curvature and
v are cached in a sidecar keyed by the checkpoint's sha256 and the settings, so
a second request on the same checkpoint pays no curvature cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unlearn_cli.training.loop import pick_threads
from unlearn_cli.data.tensors import tensors
from unlearn_cli.models.sidecar import load_sidecar, save_sidecar, sidecar_path
from unlearn_cli.influence.criteria import Criterion, Objective, get_criterion
from unlearn_cli.influence.curvature import CurvatureSettings, Solver, build_solver, curvature_matvec, relative_residual
from unlearn_cli.influence.scores import FunctionalModel, criterion_grad

RESIDUAL_SAMPLE = 256  # records for the reported residual of factorised solves (a full pass would cost an epoch)


@dataclass
class InfluenceEngine:
    checkpoint: Any
    dataset: Any
    device: torch.device
    fmodel: FunctionalModel
    objective: Objective
    criterion: Criterion
    settings: CurvatureSettings
    curvature_rows: np.ndarray
    solver: Solver
    v: torch.Tensor
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    # -- construction ----------------------------------------------------------
    @classmethod
    def build(
        cls,
        checkpoint: Any,
        dataset: Any,
        *,
        device: Any = "cpu",
        criterion: str = "cross-entropy",
        settings: CurvatureSettings | None = None,
        cache: bool = True,
        seed: int = 0,
        criterion_rows: np.ndarray | None = None,
    ) -> "InfluenceEngine":
        """Model, objective, criterion, solver and v for a checkpoint.

        ``criterion_rows`` are the records grad C is taken over (default: the
        train split, D_tn in Algorithm 1).
        """
        device = torch.device(device)
        timings: dict[str, float] = {}
        model = checkpoint.build_model(device)
        pick_threads(model)
        fmodel = FunctionalModel.of(model)
        recipe_wd = float(checkpoint.training.get("weight_decay", 0.0))
        settings = settings or CurvatureSettings()
        settings.weight_decay = recipe_wd
        objective = Objective(weight_decay=recipe_wd)
        crit = get_criterion(criterion)
        train_rows = dataset.train_indices()
        curvature_rows = _sample(train_rows, settings.sample, seed, salt=0)
        engine = cls(checkpoint, dataset, device, fmodel, objective, crit, settings, curvature_rows,
                     solver=None, v=None, seed=seed, timings=timings)  # type: ignore[arg-type]

        solver_name = settings.resolved_solver(fmodel.size)
        cacheable = cache and solver_name in ("kfac", "ekfac") and checkpoint.path is not None
        path = sidecar_path(checkpoint.path, checkpoint.sha256, f"curvature-{solver_name}") if cacheable else None
        key = {**settings.key(fmodel.size), "train_ids_digest": dataset.train_id_digest(),
               "curvature_rows": len(curvature_rows)}
        cached = load_sidecar(path, key) if path is not None else None
        # A cache hit needs no pass over the train split, so it is not even copied (cost follows the request).
        x_cv, y_cv = (None, None) if cached is not None else engine.rows(curvature_rows)

        t0 = time.perf_counter()
        engine.solver = build_solver(settings, fmodel, x_cv, y_cv, cached=cached)
        timings["curvature_s"] = time.perf_counter() - t0

        v_name = f"v.{crit.name}"
        crit_rows = train_rows if criterion_rows is None else criterion_rows
        t0 = time.perf_counter()
        v_residual = None
        if cached is not None and v_name in cached and criterion_rows is None:
            engine.v = cached[v_name].to(device)
            v_residual = float(cached.get(f"{v_name}.residual", torch.tensor(float("nan"))))
        else:
            if x_cv is None:
                x_cv, y_cv = engine.rows(curvature_rows)
            same = crit_rows is train_rows and len(curvature_rows) == len(train_rows)
            x_c, y_c = (x_cv, y_cv) if same else engine.rows(crit_rows)  # no second copy of the train split
            _, grad_c = criterion_grad(fmodel, crit, x_c, y_c)
            engine.v = engine.solver.solve(grad_c)
            v_residual = relative_residual(engine.residual_matvec(), engine.v, grad_c)
            if path is not None and criterion_rows is None:
                state = dict(cached or engine.solver.state())
                state[v_name] = engine.v
                state[f"{v_name}.residual"] = torch.tensor(v_residual)
                save_sidecar(path, state, key)
        timings["v_s"] = time.perf_counter() - t0
        engine.info = {
            "solver": solver_name,
            "curvature": settings.curvature,
            "damping": settings.damping,
            "weight_decay": recipe_wd,
            "parameters": fmodel.size,
            "curvature_records": int(len(curvature_rows)),
            "cache": None if path is None else {"path": str(path), "hit": cached is not None},
            "v_residual": v_residual,
        }
        return engine

    @classmethod
    def for_request(cls, request: Any, config: Any) -> "InfluenceEngine":
        settings = CurvatureSettings(
            solver=config.solver, curvature=config.curvature, damping=config.damping,
            cg_tol=config.cg_tol, cg_maxiter=config.cg_maxiter, lissa_depth=config.lissa_depth,
            lissa_scale=config.lissa_scale, lissa_batch=config.lissa_batch,
            lissa_repeats=config.lissa_repeats, sample=config.curvature_sample, seed=request.seed,
            fisher_samples=config.fisher_samples, ekfac_sample=config.ekfac_sample,
        )
        return cls.build(request.checkpoint, request.dataset, device=request.device, criterion=config.criterion,
                         settings=settings, cache=config.cache, seed=request.seed)

    # -- helpers ---------------------------------------------------------------
    def rows(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return tensors(self.dataset, idx, self.device)

    def sample(self, rows: np.ndarray, k: int, salt: int) -> np.ndarray:
        return _sample(rows, k, self.seed, salt)

    def residual_matvec(self):
        """(H + dI) on the curvature records; a seeded sample of them for factorised solvers."""
        rows = self.curvature_rows
        if self.solver.name in ("kfac", "ekfac"):
            rows = _sample(rows, RESIDUAL_SAMPLE, self.seed, salt=3)
        x, y = self.rows(rows)
        return curvature_matvec(self.settings, self.fmodel, x, y)

    def state_with(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The checkpoint's state dict with new trainable parameters (buffers kept)."""
        state = {k: v.clone() for k, v in self.checkpoint.state.items()}
        for name, value in params.items():
            state[name] = value.detach().to(state[name].dtype).cpu()
        return state


def _sample(rows: np.ndarray, k: int, seed: int, salt: int) -> np.ndarray:
    """A seeded subset of ``rows`` (all of them when k is 0 or >= len)."""
    rows = np.asarray(rows)
    if k <= 0 or k >= len(rows):
        return rows
    rng = np.random.default_rng([seed, salt])
    return np.sort(rng.choice(rows, size=k, replace=False))

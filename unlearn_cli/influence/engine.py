"""The influence engine: one object that PUMA, debug-labels and calibrate share.

It holds the model as a function of its parameters, the training objective J,
the criterion C, an iHVP solver for J's curvature, and v = (H + dI)^-1 grad C
over the training records (the paper's cached "HVP"). Factorised curvature and
v are cached in a sidecar keyed by the checkpoint's sha256 and the settings, so
a second request on the same checkpoint pays no curvature cost. The cache is
an optimisation: when its sidecar cannot be written (a read-only folder, a
full disk) the request goes on without it, with one warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from unlearn_cli.training.loop import pick_threads
from unlearn_cli.data.tensors import tensors
from unlearn_cli.models.sidecar import load_sidecar, save_sidecar, sidecar_path
from unlearn_cli.ops.progress import Progress
from unlearn_cli.influence.criteria import Criterion, Objective, get_criterion
from unlearn_cli.influence.scores import FunctionalModel, criterion_grad
from unlearn_cli.influence.settings import InfluenceSettings
from unlearn_cli.influence.solvers.base import (
    CurvatureSettings, Solver, build_solver, curvature_matvec, relative_residual, solver_class,
)

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
    warn: Callable[[str], None] = lambda message: None
    progress: Progress | None = None  # hears the curvature build and the solver's iterations

    # -- construction ----------------------------------------------------------
    @classmethod
    def build(
        cls,
        checkpoint: Any,
        dataset: Any,
        *,
        device: Any = "cpu",
        criterion: str = "cross-entropy",
        settings: InfluenceSettings | None = None,
        seed: int = 0,
        criterion_rows: np.ndarray | None = None,
        warn: Callable[[str], None] | None = None,
        progress: Progress | None = None,
    ) -> "InfluenceEngine":
        """Model, objective, criterion, solver and v for a checkpoint.

        ``settings`` are any command's settings that embed
        :class:`InfluenceSettings` (default: its defaults). ``criterion_rows``
        are the records grad C is taken over (default: the train split, D_tn in
        Algorithm 1). ``warn`` hears about a curvature cache that could not be written;
        ``progress`` (``ops.progress``) hears the curvature build's passes and the solver's iterations.
        """
        device = torch.device(device)
        model = checkpoint.build_model(device)
        pick_threads(model)
        fmodel = FunctionalModel.of(model)
        recipe_wd = float(checkpoint.training.get("weight_decay", 0.0))
        if not checkpoint.training and warn is not None:  # imported without --recipe (training/importing.py)
            warn(f"{checkpoint.path.name if checkpoint.path else 'the checkpoint'} records no training recipe: "
                 "the curvature assumes weight decay 0 and cross-entropy loss")
        curvature = CurvatureSettings.of(settings or InfluenceSettings(), weight_decay=recipe_wd, seed=seed)
        curvature_rows = _sample(dataset.train_indices(), curvature.curvature_sample, seed, salt=0)
        engine = cls(checkpoint, dataset, device, fmodel, Objective(weight_decay=recipe_wd),
                     get_criterion(criterion), curvature, curvature_rows,
                     solver=None, v=None, seed=seed)  # type: ignore[arg-type]
        if warn is not None:
            engine.warn = warn
        engine.progress = progress
        engine._prepare(criterion_rows)
        return engine

    @classmethod
    def for_request(cls, request: Any, config: InfluenceSettings) -> "InfluenceEngine":
        """The engine for one forget request with PUMA's options (``config`` embeds the influence settings)."""
        return cls.build(request.checkpoint, request.dataset, device=request.device, criterion=config.criterion,
                         settings=config, seed=request.seed, warn=getattr(request, "warn", None),
                         progress=getattr(request, "progress", None))

    def _prepare(self, criterion_rows: np.ndarray | None) -> None:
        """The solver and v, from the sidecar cache when it holds them."""
        settings, fmodel = self.settings, self.fmodel
        solver_name = settings.resolved_solver(fmodel.size)
        checkpoint = self.checkpoint
        cacheable = settings.cache and solver_class(solver_name).factorised and checkpoint.path is not None
        path = sidecar_path(checkpoint.path, checkpoint.sha256, f"curvature-{solver_name}") if cacheable else None
        key = {**settings.key(fmodel.size), "train_ids_digest": self.dataset.train_id_digest(),
               "curvature_rows": len(self.curvature_rows)}
        cached = load_sidecar(path, key) if path is not None else None
        # A cache hit needs no pass over the train split, so it is not even copied (cost follows the request).
        curvature_xy = (None, None) if cached is not None else self.rows(self.curvature_rows)

        t0 = time.perf_counter()
        self.solver = build_solver(settings, fmodel, *curvature_xy, cached=cached, progress=self.progress)
        self.timings["curvature_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cache_error = None
        v_name = f"v.{self.criterion.name}"
        if cached is not None and v_name in cached and criterion_rows is None:
            self.v = cached[v_name].to(self.device)
            v_residual = float(cached.get(f"{v_name}.residual", torch.tensor(float("nan"))))
        else:
            v_residual = self._solve_v(criterion_rows, curvature_xy)
            if path is not None and criterion_rows is None:
                state = dict(cached or self.solver.state())
                state[v_name] = self.v
                state[f"{v_name}.residual"] = torch.tensor(v_residual)
                cache_error = self._save_cache(path, state, key)
        self.timings["v_s"] = time.perf_counter() - t0
        self.info = {
            "solver": solver_name,
            "curvature": settings.curvature,
            "damping": settings.damping,
            "weight_decay": settings.weight_decay,
            "parameters": fmodel.size,
            "curvature_records": int(len(self.curvature_rows)),
            "cache": None if path is None else {"path": str(path), "hit": cached is not None,
                                                **({"error": cache_error} if cache_error else {})},
            "v_residual": v_residual,
        }

    def _save_cache(self, path: Any, state: dict[str, torch.Tensor], key: dict[str, Any]) -> str | None:
        """Write the curvature cache; on failure warn and return why (the request goes on without it)."""
        from unlearn_cli.errors import BadInput

        try:
            save_sidecar(path, state, key)
        except (OSError, BadInput) as exc:
            reason = str(exc) if isinstance(exc, BadInput) else (exc.strerror or type(exc).__name__)
            self.warn(f"curvature cache not saved ({reason}); the next request on this checkpoint "
                      "recomputes it")
            return reason
        return None

    def _solve_v(self, criterion_rows: np.ndarray | None, curvature_xy: tuple) -> float:
        """v = (H + dI)^-1 grad C over ``criterion_rows`` (the train split by default); its relative residual."""
        train_rows = self.dataset.train_indices()
        x_cv, y_cv = curvature_xy if curvature_xy[0] is not None else self.rows(self.curvature_rows)
        if criterion_rows is None and len(self.curvature_rows) == len(train_rows):
            x_c, y_c = x_cv, y_cv  # no second copy of the train split
        else:
            x_c, y_c = self.rows(train_rows if criterion_rows is None else criterion_rows)
        _, grad_c = criterion_grad(self.fmodel, self.criterion, x_c, y_c)
        self.v = self.solver.solve(grad_c)
        return relative_residual(self.residual_matvec(), self.v, grad_c)

    # -- helpers ---------------------------------------------------------------
    def rows(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return tensors(self.dataset, idx, self.device)

    def sample(self, rows: np.ndarray, k: int, salt: int) -> np.ndarray:
        return _sample(rows, k, self.seed, salt)

    def residual_matvec(self):
        """(H + dI) on the curvature records; a seeded sample of them for factorised solvers."""
        rows = self.curvature_rows
        if self.solver.factorised:
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

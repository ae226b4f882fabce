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
    CurvatureSettings, Solver, build_solver, curvature_matvec, operator_positions, relative_residual, solver_class,
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
    model_rows: np.ndarray | None = None  # the records the model stands on (train minus earlier removals)
    excluded: int = 0                     # train records left out of H and grad C (removed earlier)

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
        model_rows: np.ndarray | None = None,
        leave_out: np.ndarray | None = None,
        need_v: bool = True,
        warn: Callable[[str], None] | None = None,
        progress: Progress | None = None,
    ) -> "InfluenceEngine":
        """Model, objective, criterion, solver and v for a checkpoint.

        ``settings`` are any command's settings that embed
        :class:`InfluenceSettings` (default: its defaults). ``model_rows`` are
        the records the model stands on (default: the train split; a forget
        request passes the train split without the records removed earlier, so
        H and grad C never see them again). ``leave_out`` (a request's records)
        are also kept out of a curvature built for this request alone; a
        cached (factorised) curvature keeps them, an O(k/n) difference.
        ``criterion_rows`` are the records grad C is taken over (default:
        ``model_rows``, D_tn in Algorithm 1); ``need_v=False`` skips v (PUMA
        takes grad C at every step itself). ``warn`` hears about a curvature
        cache that could not be written; ``progress`` (``ops.progress``) hears
        the curvature build's passes and the solver's iterations.
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
        train_rows = dataset.train_indices()
        model_rows = train_rows if model_rows is None else np.sort(np.asarray(model_rows, dtype=np.int64))
        base_rows = model_rows
        if leave_out is not None and len(leave_out) and not solver_class(
                curvature.resolved_solver(fmodel.size)).factorised:
            base_rows = np.setdiff1d(model_rows, leave_out)
        curvature_rows = _sample(base_rows, curvature.curvature_sample, seed, salt=0)
        engine = cls(checkpoint, dataset, device, fmodel, Objective(weight_decay=recipe_wd),
                     get_criterion(criterion), curvature, curvature_rows,
                     solver=None, v=None, seed=seed)  # type: ignore[arg-type]
        if warn is not None:
            engine.warn = warn
        engine.progress = progress
        engine.model_rows = model_rows
        engine.excluded = int(len(train_rows) - len(model_rows))
        engine._prepare(criterion_rows, need_v)
        return engine

    @classmethod
    def for_request(cls, request: Any, config: InfluenceSettings, **kwargs: Any) -> "InfluenceEngine":
        """The engine for one forget request: H and grad C over the records the model stands on now."""
        model_rows = np.concatenate([request.retain_rows, request.forget_rows])
        return cls.build(request.checkpoint, request.dataset, device=request.device, criterion=config.criterion,
                         settings=config, seed=request.seed, model_rows=model_rows,
                         leave_out=request.forget_rows, warn=getattr(request, "warn", None),
                         progress=getattr(request, "progress", None), **kwargs)

    def _prepare(self, criterion_rows: np.ndarray | None, need_v: bool = True) -> None:
        """The solver and v, from the sidecar cache (this checkpoint's, or its parent's) when it holds them."""
        settings, fmodel = self.settings, self.fmodel
        solver_name = settings.resolved_solver(fmodel.size)
        checkpoint = self.checkpoint
        cacheable = settings.cache and solver_class(solver_name).factorised and checkpoint.path is not None
        path = sidecar_path(checkpoint.path, checkpoint.sha256, f"curvature-{solver_name}") if cacheable else None
        key = {**settings.key(fmodel.size), "train_ids_digest": self.dataset.train_id_digest(),
               "curvature_rows": len(self.curvature_rows), "rows_digest": rows_digest(self.curvature_rows)}
        cached = load_sidecar(path, key) if path is not None else None
        reuse = None
        if cached is None and path is not None:
            cached, reuse = parent_curvature(checkpoint, solver_name, key, settings.curvature_refresh)
        # A cache hit needs no pass over the train split, so it is not even copied (cost follows the request);
        # a solver whose operator runs on a sample of the curvature records gets that sample back.
        curvature_xy = (None, None) if cached is not None else self.rows(self.curvature_rows)
        solver_xy = curvature_xy
        sample_field = getattr(solver_class(solver_name), "operator_sample_field", None)
        if cached is not None and sample_field:
            keep = operator_positions(len(self.curvature_rows), getattr(settings, sample_field), settings.seed)
            solver_xy = self.rows(self.curvature_rows[keep])

        t0 = time.perf_counter()
        self.solver = build_solver(settings, fmodel, *solver_xy, cached=cached, progress=self.progress)
        self.timings["curvature_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cache_error, v_residual = None, None
        v_name = f"v.{self.criterion.name}"
        if not need_v:
            self.v = None  # type: ignore[assignment]
        elif cached is not None and reuse is None and v_name in cached and criterion_rows is None:
            self.v = cached[v_name].to(self.device)
            v_residual = float(cached.get(f"{v_name}.residual", torch.tensor(float("nan"))))
        else:
            v_residual = self._solve_v(criterion_rows, curvature_xy)
        if path is not None and (cached is None or reuse is not None):
            state = dict(cached or self.solver.state())
            state.setdefault("rows_at_build", torch.tensor(len(self.curvature_rows)))
            if need_v and criterion_rows is None:
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
            "excluded_records": self.excluded,
            "cache": None if path is None else {"path": str(path), "hit": cached is not None and reuse is None,
                                                **({"reused_from_parent": reuse} if reuse else {}),
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
        """v = (H + dI)^-1 grad C over ``criterion_rows`` (the model's records by default); its relative residual."""
        if criterion_rows is None and curvature_xy[0] is not None and np.array_equal(self.curvature_rows,
                                                                                     self.model_rows):
            x_c, y_c = curvature_xy  # no second copy of the train split
        else:
            x_c, y_c = self.rows(self.model_rows if criterion_rows is None else criterion_rows)
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


def rows_digest(rows: np.ndarray) -> str:
    """A short digest of a row set (the cache key of a curvature built on it)."""
    import hashlib

    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


def parent_curvature(checkpoint: Any, solver_name: str, key: dict[str, Any], refresh: float
                     ) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
    """The lineage parent's cached factors when the records removed since they were built are few.

    A forget child (``--in-place`` or ``--out`` in the same folder) finds its parent's sidecar by the
    parent's sha256 in its lineage. The factors are reused while the records removed since they were built
    stay within ``refresh`` (a fraction of the records they were built on); v is always solved anew.
    """
    lineage = checkpoint.meta.get("lineage") or []
    parent = lineage[-1].get("parent_sha256") if lineage and isinstance(lineage[-1], dict) else None
    if not isinstance(parent, str) or checkpoint.path is None:
        return None, None
    path = sidecar_path(checkpoint.path, parent, f"curvature-{solver_name}")
    loose = {k: v for k, v in key.items() if k not in ("curvature_rows", "rows_digest")}
    cached = load_sidecar(path, loose, relax=("curvature_rows", "rows_digest"))
    if cached is None or "rows_at_build" not in cached:
        return None, None
    built = int(cached["rows_at_build"])
    removed = max(0, built - int(key["curvature_rows"])) / max(built, 1)
    if removed > refresh:
        return None, None
    kept = {k: v for k, v in cached.items() if not k.startswith("v.")}
    return kept, {"parent_sha256": parent[:16], "removed_since_build": removed, "refresh_at": refresh}


def _sample(rows: np.ndarray, k: int, seed: int, salt: int) -> np.ndarray:
    """A seeded subset of ``rows`` (all of them when k is 0 or >= len)."""
    rows = np.asarray(rows)
    if k <= 0 or k >= len(rows):
        return rows
    rng = np.random.default_rng([seed, salt])
    return np.sort(rng.choice(rows, size=k, replace=False))

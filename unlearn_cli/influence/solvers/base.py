"""What every iHVP solver shares: the problem it solves, the interface, and how one is chosen and built.

A solver applies (H + (weight_decay + damping) I)^-1 for the curvature H of
``influence/curvature.py``. Solvers are plugins of the ``unlearn.solvers``
entry-point group (the built-ins register there too), each a :class:`Solver`
subclass built by ``Solver.build(settings, fmodel, x, y, cached, progress)``:
``build_solver`` resolves ``auto`` and looks the name up through
``unlearn_cli.plugins``. ``progress`` (``ops.progress``, may be None) hears
the passes that build the solver (factor passes, GGN rows) with their totals
up front; ``solve`` reports its iterations to ``self.progress`` where they are
cheap to count (CG, LiSSA).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import inspect

import numpy as np
import torch

from unlearn_cli import plugins
from unlearn_cli.errors import BadInput
from unlearn_cli.ops.progress import Progress
from unlearn_cli.influence.curvature import ggn_matvec, hessian_matvec
from unlearn_cli.influence.scores import FunctionalModel
from unlearn_cli.influence.settings import EXACT_MAX_PARAMS, SOLVER_CHOICES, InfluenceSettings, listed

#: Every solver name a user may give: auto, then the registered solvers.
SOLVERS = ("auto", *listed(plugins.names("solvers"), SOLVER_CHOICES))


@dataclass
class CurvatureSettings(InfluenceSettings):
    """The user's influence settings plus what the run supplies: the recipe's L2 term and the seed."""

    weight_decay: float = 0.0   # the checkpoint's recipe; J's curvature includes it
    seed: int = 0               # LiSSA's power iteration and mini-batches, EK-FAC's correction sample

    @classmethod
    def of(cls, settings: InfluenceSettings, weight_decay: float, seed: int) -> "CurvatureSettings":
        shared = {f.name: getattr(settings, f.name) for f in fields(InfluenceSettings)}
        return cls(**shared, weight_decay=weight_decay, seed=seed)

    def resolved_solver(self, n_params: int) -> str:
        if self.solver == "auto":
            return "exact" if n_params <= EXACT_MAX_PARAMS else "ekfac"
        return self.solver

    @property
    def total_damping(self) -> float:
        return float(self.weight_decay + self.damping)

    def key(self, n_params: int) -> dict[str, Any]:
        """Everything the cached factors depend on (the sidecar's key)."""
        solver = self.resolved_solver(n_params)
        keep = {"solver": solver, "curvature": self.curvature, "damping": self.damping,
                "weight_decay": self.weight_decay, "sample": self.curvature_sample, "seed": self.seed}
        keep.update({name: getattr(self, name) for name in solver_class(solver).key_fields})
        return keep


class Solver(ABC):
    """Applies (H + d I)^-1; ``state`` is what the sidecar cache stores."""

    name: ClassVar[str] = ""
    #: settings besides the shared ones that change what it computes (part of the cache key)
    key_fields: ClassVar[tuple[str, ...]] = ()
    #: built once per checkpoint from passes over the data: its state is cached beside the
    #: checkpoint, and its residual is checked on a sample (a full pass would cost an epoch)
    factorised: ClassVar[bool] = False
    #: the settings field holding how many curvature records the solver still needs after a cache
    #: hit (its operator's sample); None: a cached state alone solves. The engine passes exactly
    #: the rows ``operator_positions(len(curvature_rows), k, seed)`` picks, beside ``cached``.
    operator_sample_field: ClassVar[str | None] = None
    #: hears ``solve``'s iterations; set by ``build_solver``
    progress: Progress | None = None

    def __init__(self, settings: CurvatureSettings):
        self.settings = settings
        self.info: dict[str, Any] = {}

    @classmethod
    @abstractmethod
    def build(cls, settings: CurvatureSettings, fmodel: FunctionalModel, x: torch.Tensor | None,
              y: torch.Tensor | None, cached: dict[str, torch.Tensor] | None = None,
              progress: Progress | None = None) -> "Solver":
        """The solver for J's curvature on records (x, y); ``cached`` is a former ``state()``.

        With ``cached``, x and y are None, or the operator's records when ``operator_sample_field`` is set.
        """

    @abstractmethod
    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """(H + d I)^-1 b."""

    def state(self) -> dict[str, torch.Tensor]:
        return {}


def operator_positions(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted positions of the seeded k of n curvature records an operator sample uses (all when k <= 0 or k >= n).

    One function for the cold build (which slices the curvature records it is given) and the engine
    on a cache hit (which loads only these rows), so both see the same records.
    """
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 7]).choice(n, size=k, replace=False))


def curvature_matvec(settings: CurvatureSettings, fmodel, x, y) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H + total_damping I) v on the given records."""
    base = ggn_matvec if settings.curvature == "ggn" else hessian_matvec
    d = settings.total_damping
    return lambda v: base(fmodel, x, y, v) + d * v


def relative_residual(matvec: Callable[[torch.Tensor], torch.Tensor], solution: torch.Tensor, b: torch.Tensor) -> float:
    """||(H + dI) x - b|| / ||b||: how well the solve satisfied its equation."""
    b_norm = float(b.norm())
    if b_norm == 0:
        return 0.0
    return float((matvec(solution) - b).norm()) / b_norm


def check_solver(name: str) -> None:
    """A solver name a user may give (auto included); unknown names list every choice."""
    if name not in SOLVERS:
        raise BadInput(f"unknown solver '{name}'; choose one of: {', '.join(SOLVERS)}")


def solver_class(name: str) -> type[Solver]:
    """The registered solver ``name`` (auto already resolved)."""
    check_solver(name)
    if name == "auto":
        raise ValueError("resolve auto with CurvatureSettings.resolved_solver first")
    return plugins.load("solvers", name)


def build_solver(settings: CurvatureSettings, fmodel: FunctionalModel, x, y, cached: dict | None = None,
                 progress: Progress | None = None) -> Solver:
    chosen = solver_class(settings.resolved_solver(fmodel.size))
    if settings.curvature not in ("ggn", "hessian"):
        raise BadInput(f"curvature must be ggn or hessian, got '{settings.curvature}'")
    # a plugin solver written without ``progress`` still builds, silently
    hears = "progress" in inspect.signature(chosen.build).parameters
    solver = chosen.build(settings, fmodel, x, y, cached, **({"progress": progress} if hears else {}))
    solver.progress = progress
    return solver

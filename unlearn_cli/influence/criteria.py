"""The training objective J and the performance criteria C, as small objects.

The influence engine never hard-codes a loss: it is handed an ``Objective``
(what training minimised: mean cross-entropy plus the recorded L2 term) and a
``Criterion`` (what the user wants preserved, equation 2 of the PUMA paper).
Every criterion is written as a quantity to *minimise*, so "C unchanged" means
the same thing for all of them. Criteria are plugins of the ``unlearn.criteria``
entry-point group (the three below register there too): a :class:`Criterion`
subclass whose ``name`` is its entry point's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from unlearn_cli import plugins
from unlearn_cli.errors import BadInput
from unlearn_cli.influence.settings import CRITERION_CHOICES, listed


@dataclass(frozen=True)
class Objective:
    """J(theta) = mean_i CE(x_i, y_i) + weight_decay/2 * ||theta||^2 (equation 3 plus the recipe's L2)."""

    weight_decay: float = 0.0

    def per_record(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_t(x_i, y_i): the per-record training loss whose gradients psi and Phi use."""
        return F.cross_entropy(logits, y, reduction="none")


@dataclass(frozen=True)
class LogOdds(Objective):
    """R(x, y) = -log(p_y / (1 - p_y)) = logsumexp_{c != y} z_c - z_y: minus the true class's log-odds.

    A removal direction that does not vanish on records the model fits: its gradient in the logits is
    q - e_y (q: the softmax over the other classes), of size ~1 however confident the model is, where
    cross-entropy's is p - e_y, ~0 at p_y ~ 1. R = L - U with U = -log(1 - p_y) (unlikelihood), so
    moving a record's weight on R is moving its weight on L and pushing its true class down at once.
    """

    def per_record(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        own = logits.gather(1, y[:, None])[:, 0]
        others = logits.scatter(1, y[:, None], float("-inf")).logsumexp(1)
        return others - own


class Criterion(ABC):
    """C(theta) on a set of records; must be differentiable in the logits."""

    name = ""
    doc = ""
    #: a mean over records, so grad C can be accumulated chunk by chunk
    decomposable = False

    @abstractmethod
    def value(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The criterion over these records (a scalar tensor, differentiable in the logits)."""


class CrossEntropy(Criterion):
    name = "cross-entropy"
    doc = "mean cross-entropy (the paper's default: J and C identical)"
    decomposable = True

    def value(self, logits, y):
        return F.cross_entropy(logits, y)


class SoftError(Criterion):
    """1 - mean p(y|x): the expected error under the model's own predictive distribution.

    A smooth surrogate of 1 - accuracy: it equals the error rate when the model
    is confident, and unlike the 0/1 error it has a gradient everywhere.
    """

    name = "accuracy"
    doc = "1 - mean probability of the true class (smooth surrogate of the error rate)"
    decomposable = True

    def value(self, logits, y):
        return 1.0 - torch.softmax(logits, 1).gather(1, y[:, None]).mean()


class SoftECE(Criterion):
    """Differentiable expected calibration error with soft (Gaussian kernel) bins.

    Each record's confidence is spread over the 15 bin centres with weights
    softmax(-(conf - centre)^2 / (2 * width^2)); correctness is the hard 0/1
    (locally constant in theta). As width -> 0 this is the standard binned ECE.
    """

    name = "ece"
    doc = "soft-binned expected calibration error (15 bins, Gaussian kernel of one bin width)"

    def __init__(self, bins: int = 15):
        self.bins = bins

    def value(self, logits, y):
        probs = torch.softmax(logits, 1)
        conf = probs.max(1).values
        correct = (probs.argmax(1) == y).to(conf.dtype)
        centres = (torch.arange(self.bins, dtype=conf.dtype, device=conf.device) + 0.5) / self.bins
        width = 1.0 / self.bins
        weights = torch.softmax(-((conf[:, None] - centres[None, :]) ** 2) / (2 * width**2), 1)
        gap = (weights * (conf - correct)[:, None]).sum(0)
        return gap.abs().sum() / len(y)


@lru_cache(maxsize=None)
def registered() -> dict[str, type[Criterion]]:
    """Every registered criterion by name, in listing order (the paper's default first)."""
    return {name: plugins.load("criteria", name) for name in listed(plugins.names("criteria"), CRITERION_CHOICES)}


def __getattr__(name: str):
    # ``CRITERIA`` reads the registry on first use: importing this module scans no entry points.
    if name == "CRITERIA":
        return registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_criterion(name: str) -> Criterion:
    found = registered()
    if name not in found:
        raise BadInput(f"unknown criterion '{name}'; choose one of: {', '.join(found)}")
    return found[name]()

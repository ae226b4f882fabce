"""LiSSA: the stochastic Neumann recursion of Koh & Liang (2017), with divergence detection."""

from __future__ import annotations

import math

import torch

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.solvers.base import Solver, curvature_matvec
from unlearn_cli.ops.progress import Counter


class LissaSolver(Solver):
    """h <- b + h - (H h + d h)/scale; (H + d I)^-1 b = h/scale at the fixed point.

    Converges when scale exceeds the largest eigenvalue of H + d I; a growing
    norm means it does not, which is reported instead of returning garbage.
    """

    name = "lissa"
    key_fields = ("lissa_depth", "lissa_scale", "lissa_batch", "lissa_repeats")

    def __init__(self, settings, fmodel, x, y, progress=None):
        super().__init__(settings)
        self.fmodel, self.x, self.y = fmodel, x, y
        self.full = curvature_matvec(settings, fmodel, x, y)
        self.scale = settings.lissa_scale or 1.5 * self._largest_eigenvalue(progress=progress)

    @classmethod
    def build(cls, settings, fmodel, x, y, cached=None, progress=None):
        return cls(settings, fmodel, x, y, progress)

    def _largest_eigenvalue(self, iterations: int = 30, progress=None) -> float:
        gen = torch.Generator().manual_seed(self.settings.seed)
        v = torch.randn(self.fmodel.size, generator=gen).to(self.x)
        v /= v.norm()
        value = 1.0
        tick = Counter(progress, "curvature: LiSSA scale (power iterations)", iterations)
        for _ in range(iterations):
            w = self.full(v)
            value = float(w.norm())
            v = w / (value or 1.0)
            tick()
        return value

    def solve(self, b):
        s = self.settings
        gen = torch.Generator().manual_seed(s.seed)
        n = len(self.y)
        estimates = []
        b_norm = float(b.norm()) or 1.0
        tick = Counter(self.progress, "LiSSA steps", max(1, s.lissa_repeats) * s.lissa_depth)
        for _ in range(max(1, s.lissa_repeats)):
            h = b.clone()
            for step in range(s.lissa_depth):
                if s.lissa_batch and s.lissa_batch < n:
                    idx = torch.randint(n, (s.lissa_batch,), generator=gen).to(self.x.device)
                    Hh = curvature_matvec(s, self.fmodel, self.x[idx], self.y[idx])(h)
                else:
                    Hh = self.full(h)
                h = b + h - Hh / self.scale
                tick()
                norm = float(h.norm())
                if not math.isfinite(norm) or norm > 1e8 * b_norm:
                    raise BadInput(
                        f"LiSSA diverged at step {step + 1} (norm {norm:.3g}); raise --set lissa_scale= above the "
                        f"largest curvature eigenvalue (it was {self.scale:.3g}) or use --set solver=cg"
                    )
            estimates.append(h / self.scale)
        self.info = {"lissa_scale": self.scale, "lissa_depth": s.lissa_depth}
        return torch.stack(estimates).mean(0)

"""The eta walk of PUMA's first step: how far C may worsen, the grid, and the choice of eta.

C may get *worse* by at most delta (relative to C before, at least delta_floor, or absolute); a C that
improves never stops the walk. Far from the Taylor regime the change of C is not monotone in eta, so only
the unbroken prefix of the ascending grid is trusted (``choose_eta``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np


def allowed_worsening(c0: float, settings: Any) -> float:
    """How much C may grow: delta relative to |C before| (at least delta_floor), or delta absolute."""
    if settings.delta_mode == "relative":
        return max(settings.delta * abs(c0), settings.delta_floor)
    return settings.delta


def eta_grid(settings: Any) -> list[float]:
    """The geometric grid, ascending, ``eta_grid`` points per decade between eta_min and eta_max."""
    lo, hi = settings.eta_min, settings.eta_max
    if lo >= hi:
        return [hi]
    points = max(2, int(round(math.log10(hi / lo) * settings.eta_grid)) + 1)
    return [float(v) for v in np.geomspace(lo, hi, points)]


def choose_eta(change: Callable[[float], float], bound: float, settings: Any,
               reached: Callable[[float], bool] | None = None) -> tuple[float | None, dict[str, Any]]:
    """The eta of the first step: one-sided on C, and no further than the removal target needs.

    Feasible: a grid eta such that it and every smaller grid eta keep change of C <= bound. Far from the
    Taylor regime the change of C is not monotone in eta, so only the unbroken prefix of the ascending
    grid is trusted: coarse walk (one point per decade), then fine between the last good and first bad
    coarse points. With ``reached`` (does this eta bring the forgotten records down to the target?) the
    walk stops at the first coarse point that reaches it and refines below it: the smallest feasible eta
    that reaches the target, else the largest feasible one. None when even the smallest eta worsens C
    past the bound.
    """
    grid = eta_grid(settings)
    tried: dict[float, float] = {}
    hits: dict[float, bool] = {}

    def ok(eta: float) -> bool:
        if eta not in tried:
            tried[eta] = change(eta)
        return bool(tried[eta] <= bound)  # NaN -> False; an improving C is always fine

    def hit(eta: float) -> bool:
        if reached is None:
            return False
        if eta not in hits:
            hits[eta] = bool(reached(eta))
        return hits[eta]

    step = max(1, settings.eta_grid)
    coarse = grid[::step] + ([grid[-1]] if (len(grid) - 1) % step else [])
    last_good, first_hit = -1, None
    for eta in coarse:
        if not ok(eta):
            break
        last_good = grid.index(eta)
        if hit(eta):
            first_hit = last_good
            break
    if first_hit is not None:   # refine downwards: the smallest grid eta that still reaches the target
        best = grid[first_hit]
        for eta in reversed(grid[max(0, first_hit - step + 1): first_hit]):
            if not (ok(eta) and hit(eta)):
                break
            best = eta
    else:
        best = grid[last_good] if last_good >= 0 else None
        if last_good < len(grid) - 1:
            for eta in grid[last_good + 1: last_good + step]:
                if not ok(eta):
                    break
                best = eta
                if hit(eta):
                    break
    where = None if best is None else ("top of the grid" if best == grid[-1] else
                                       "bottom of the grid" if best == grid[0] else "inside the grid")
    return best, {"eta_tried": {f"{k:.4g}": v for k, v in sorted(tried.items())}, "eta_position": where,
                  "target_reached": bool(best is not None and hits.get(best, False))}

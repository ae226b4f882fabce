"""Equation 10: the exact single-residual solver is at least as good as the paper's SLSQP."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.reweight import objective_value, reweight, solve_exact, solve_slsqp


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 40),
    l1=st.sampled_from([0.0, 1e-3, 0.1, 2.0]),
    l2=st.sampled_from([1e-3, 0.1, 1.0]),
)
def test_exact_objective_is_no_worse_than_slsqp(seed, n, l1, l2):
    rng = np.random.default_rng(seed)
    psi = rng.normal(size=n) * rng.uniform(0.1, 10)
    target = float(rng.normal() * 5)
    exact = objective_value(psi, target, solve_exact(psi, target, l1, l2), l1, l2)
    reference = objective_value(psi, target, solve_slsqp(psi, target, l1, l2), l1, l2)
    assert exact <= reference + 1e-9 * max(1.0, abs(reference))


def test_exact_solution_satisfies_the_optimality_conditions():
    rng = np.random.default_rng(0)
    psi, target, l1, l2 = rng.normal(size=200), 7.0, 0.05, 0.01
    lam = solve_exact(psi, target, l1, l2)
    r = psi @ lam - target
    grad_smooth = 2 * r * psi + 2 * l2 * lam
    active = lam != 0
    np.testing.assert_allclose(grad_smooth[active], -l1 * np.sign(lam[active]), atol=1e-9)
    assert np.all(np.abs(grad_smooth[~active]) <= l1 + 1e-9)
    assert 0 < active.sum() < 200  # the l1 term really makes it sparse


def test_reweighting_cancels_the_first_order_change():
    rng = np.random.default_rng(1)
    psi_up, psi_mk = rng.normal(size=500), rng.normal(size=20) + 0.5
    result = reweight(psi_up, psi_mk, l1=0.0, l2=1e-6)
    assert abs(result.residual) < 1e-6
    assert result.nonzero == 500 and result.solver == "exact"


def test_zero_l2_and_unknown_solver_are_bad_input():
    with pytest.raises(BadInput, match="lambda_l2 must be > 0"):
        solve_exact(np.ones(3), 1.0, 0.0, 0.0)
    with pytest.raises(BadInput, match="lambda_solver"):
        reweight(np.ones(3), np.ones(1), 0.0, 1.0, solver="lbfgs")

"""iHVP solvers agree with each other and with the explicit damped matrix."""

from __future__ import annotations

import pytest
import torch

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.curvature import dense_ggn, dense_hessian, ggn_matvec, hessian_matvec
from unlearn_cli.influence.solvers.base import CurvatureSettings, build_solver, curvature_matvec, relative_residual
from unlearn_cli.influence.scores import FunctionalModel

DAMPING = 0.05  # large enough for LiSSA to converge in a few hundred steps on these models


def _rhs(fmodel, seed=3):
    return torch.randn(fmodel.size, generator=torch.Generator().manual_seed(seed))


def test_dense_ggn_matches_matrix_free_products(small_mlp):
    fmodel = FunctionalModel.of(small_mlp.model)
    G = dense_ggn(fmodel, small_mlp.x)
    v = _rhs(fmodel)
    torch.testing.assert_close(ggn_matvec(fmodel, small_mlp.x, small_mlp.y, v), (G @ v.double()).float(),
                               rtol=1e-4, atol=1e-6)
    assert torch.linalg.eigvalsh(G).min() > -1e-8  # GGN is positive semi-definite


@pytest.mark.parametrize("which", ["small_cnn", "small_densenet"])
def test_dense_ggn_by_layer_hooks_is_exact_for_conv_and_batchnorm(which, request):
    trained = request.getfixturevalue(which)
    fmodel = FunctionalModel.of(trained.model)
    x, y = trained.x[:30], trained.y[:30]
    G = dense_ggn(fmodel, x)
    v = _rhs(fmodel)
    torch.testing.assert_close(ggn_matvec(fmodel, x, y, v), (G @ v.double()).float(), rtol=1e-3, atol=1e-6)


def test_dense_hessian_matches_hvp_and_is_symmetric(small_mlp):
    fmodel = FunctionalModel.of(small_mlp.model)
    x, y = small_mlp.x[:60], small_mlp.y[:60]
    H = dense_hessian(fmodel, x, y)
    v = _rhs(fmodel)
    torch.testing.assert_close(hessian_matvec(fmodel, x, y, v), (H @ v.double()).float(), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(H, H.T)


@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
def test_exact_cg_and_lissa_agree(small_mlp, curvature):
    """Stated tolerance: relative difference below 1e-3 (cg) and 1e-2 (lissa) of the exact solve."""
    fmodel = FunctionalModel.of(small_mlp.model)
    x, y = small_mlp.x, small_mlp.y
    b = _rhs(fmodel)
    base = dict(curvature=curvature, damping=DAMPING, weight_decay=1e-3)
    exact = build_solver(CurvatureSettings(solver="exact", **base), fmodel, x, y).solve(b)
    cg = build_solver(CurvatureSettings(solver="cg", **base), fmodel, x, y).solve(b)
    lissa = build_solver(CurvatureSettings(solver="lissa", lissa_depth=600, **base), fmodel, x, y).solve(b)
    scale = exact.norm()
    assert (cg - exact).norm() / scale < 1e-3
    assert (lissa - exact).norm() / scale < 1e-2
    matvec = curvature_matvec(CurvatureSettings(**base), fmodel, x, y)
    assert relative_residual(matvec, exact, b) < 1e-4


@pytest.mark.parametrize("solver", ["kfac", "ekfac"])
def test_factorised_solvers_point_where_the_exact_solve_points(small_mlp, solver):
    fmodel = FunctionalModel.of(small_mlp.model)
    x, y = small_mlp.x, small_mlp.y
    b = _rhs(fmodel)
    exact = build_solver(CurvatureSettings(solver="exact", damping=0.1), fmodel, x, y).solve(b)
    approx = build_solver(CurvatureSettings(solver=solver, damping=0.1, fisher_samples=0), fmodel, x, y).solve(b)
    assert torch.nn.functional.cosine_similarity(exact, approx, 0) > 0.95


def test_ekfac_covers_conv_and_batchnorm_and_caches_its_factors(small_densenet):
    fmodel = FunctionalModel.of(small_densenet.model)
    x, y = small_densenet.x, small_densenet.y
    settings = CurvatureSettings(solver="ekfac", damping=0.1)
    first = build_solver(settings, fmodel, x, y)
    again = build_solver(settings, fmodel, x, y, cached=first.state())
    b = _rhs(fmodel)
    torch.testing.assert_close(first.solve(b), again.solve(b))
    exact = build_solver(CurvatureSettings(solver="exact", damping=0.1), fmodel, x, y).solve(b)
    assert torch.nn.functional.cosine_similarity(exact, first.solve(b), 0) > 0.5


def test_lissa_divergence_is_a_clear_error(small_mlp):
    fmodel = FunctionalModel.of(small_mlp.model)
    settings = CurvatureSettings(solver="lissa", damping=DAMPING, lissa_scale=1e-4, lissa_depth=200)
    solver = build_solver(settings, fmodel, small_mlp.x, small_mlp.y)
    with pytest.raises(BadInput, match="LiSSA diverged.*raise --set lissa_scale="):
        solver.solve(_rhs(fmodel))


def test_indefinite_hessian_without_damping_is_a_clear_error(small_mlp):
    fmodel = FunctionalModel.of(small_mlp.model)
    H = dense_hessian(fmodel, small_mlp.x, small_mlp.y)
    low = float(torch.linalg.eigvalsh(H)[0])
    if low >= 0:
        pytest.skip("this model's Hessian happens to be positive semi-definite")
    with pytest.raises(BadInput, match="not positive definite"):
        build_solver(CurvatureSettings(solver="exact", curvature="hessian", damping=0.0), fmodel,
                     small_mlp.x, small_mlp.y)


@pytest.mark.parametrize("which", ["small_mlp", "small_cnn"])
def test_exact_dual_form_equals_the_primal_solve(which, request):
    """Woodbury on the N*C pseudo-gradient rows gives the same (G + dI)^-1 b as the P x P Cholesky."""
    from unlearn_cli.influence.solvers.exact import ExactSolver

    trained = request.getfixturevalue(which)
    fmodel = FunctionalModel.of(trained.model)
    x, y = trained.x[:40], trained.y[:40]
    settings = CurvatureSettings(solver="exact", damping=1e-3, weight_decay=1e-4)
    primal = ExactSolver(settings, fmodel, x, y, form="primal")
    dual = ExactSolver(settings, fmodel, x, y, form="dual")
    assert (primal.form, dual.form) == ("primal", "dual")
    b = _rhs(fmodel)
    torch.testing.assert_close(dual.solve(b), primal.solve(b), rtol=1e-4, atol=1e-6)
    B = torch.stack([b, _rhs(fmodel, seed=4)], 1)
    torch.testing.assert_close(dual.solve_many(B), primal.solve_many(B), rtol=1e-6, atol=1e-8)
    # The residual of the equation itself, against the matrix-free product.
    assert relative_residual(curvature_matvec(settings, fmodel, x, y), dual.solve(b), b) < 1e-4
    # auto takes the dual form exactly when there are fewer rows than parameters.
    rows = len(x) * int(trained.model(x[:1]).shape[1])
    assert ExactSolver(settings, fmodel, x, y).form == ("dual" if rows < fmodel.size else "primal")

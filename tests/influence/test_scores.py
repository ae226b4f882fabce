"""psi from one jvp pass equals per-record gradients dotted with v; weighted sums equal one backward."""

from __future__ import annotations

import pytest
import torch

from unlearn_cli.influence.criteria import CRITERIA, Objective, get_criterion
from unlearn_cli.influence.scores import FunctionalModel, criterion_grad, per_record_grads, psi, weighted_grad


@pytest.mark.parametrize("which", ["small_mlp", "small_cnn", "small_densenet"])
def test_psi_by_jvp_equals_vmap_gradients_dot_v(which, request):
    trained = request.getfixturevalue(which)
    fmodel = FunctionalModel.of(trained.model)
    x, y = trained.x[:40], trained.y[:40]
    v = torch.randn(fmodel.size, generator=torch.Generator().manual_seed(1))
    expected = per_record_grads(fmodel, Objective(), x, y) @ v
    got = psi(fmodel, Objective(), x, y, v, chunk=16)  # several chunks
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_weighted_grad_is_the_weighted_sum_of_per_record_gradients(small_mlp):
    fmodel = FunctionalModel.of(small_mlp.model)
    x, y = small_mlp.x[:50], small_mlp.y[:50]
    w = torch.linspace(-1, 2, 50)
    expected = w @ per_record_grads(fmodel, Objective(), x, y)
    torch.testing.assert_close(weighted_grad(fmodel, Objective(), x, y, w, chunk=7), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_has_a_finite_gradient_that_matches_finite_differences(name, small_mlp):
    fmodel = FunctionalModel.of(small_mlp.model)
    crit = get_criterion(name)
    x, y = small_mlp.x, small_mlp.y
    value, grad = criterion_grad(fmodel, crit, x, y)
    assert torch.isfinite(grad).all() and grad.norm() > 0
    direction = grad / grad.norm()
    eps = 1e-3
    from unlearn_cli.influence.scores import criterion_value

    plus = criterion_value(fmodel, crit, fmodel.shifted(eps * direction), x, y)
    minus = criterion_value(fmodel, crit, fmodel.shifted(-eps * direction), x, y)
    numeric = (plus - minus) / (2 * eps)
    assert numeric == pytest.approx(float(grad.norm()), rel=0.05)


def test_soft_ece_tracks_binned_ece():
    from unlearn_cli.models.predict import ece

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 3, generator=gen) * 3
    y = torch.randint(0, 3, (2000,), generator=gen)
    soft = float(get_criterion("ece").value(logits, y))
    hard = ece(torch.softmax(logits, 1).numpy(), y.numpy())
    assert soft == pytest.approx(hard, abs=0.03)


def test_unknown_criterion_is_bad_input():
    from unlearn_cli.errors import BadInput

    with pytest.raises(BadInput, match="unknown criterion 'f1'"):
        get_criterion("f1")

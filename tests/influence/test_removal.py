"""PUMA's removal in natural units (influence/removal.py) against an independent Newton step and a retrain.

On an L2-regularised multinomial logistic regression (strictly convex, trained to convergence with
L-BFGS in float64 here), one PUMA step with lambda = 0 and eta = 1 must equal the exact Newton removal
step theta - H'^-1 grad J'(theta) of the objective without the removed records (weight-decay term
included), with H' computed by torch.func.hessian; several re-linearised steps must land closer to the
retrained optimum than one step does.
"""

from __future__ import annotations

import numpy as np
import torch

from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.influence.eta_walk import choose_eta
from unlearn_cli.methods.base import Request
from unlearn_cli.methods.puma import Puma
from unlearn_cli.models.checkpoint import Checkpoint
from unlearn_cli.models.registry import build, make_spec
from unlearn_cli.options import parse_options

WD = 1e-2


def _objective(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, d: int, c: int) -> torch.Tensor:
    weight, bias = w[: c * d].view(c, d), w[c * d:]
    return torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + WD / 2 * (w @ w)


def _fit(x: torch.Tensor, y: torch.Tensor, d: int, c: int, start: torch.Tensor | None = None) -> torch.Tensor:
    w = (torch.zeros(c * d + c, dtype=torch.float64) if start is None else start.clone()).requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _objective(w, x, y, d, c)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return w.detach()


def _setup(blobs_manifest):
    dataset = load_manifest(blobs_manifest)
    d, c = int(np.prod(dataset.input_shape)), dataset.num_classes
    train = dataset.train_indices()
    x = torch.from_numpy(dataset.x[train]).double().reshape(len(train), -1)
    y = torch.from_numpy(dataset.y[train]).long()
    w0 = _fit(x, y, d, c)
    spec = make_spec("linear", dataset.input_shape, c)
    module = build(spec)
    names = [n for n, _ in module.named_parameters()]  # weight then bias
    state = {names[0]: w0[: c * d].view(c, d).float(), names[1]: w0[c * d:].float()}
    ckpt = Checkpoint(state, {"arch": spec, "training": {"weight_decay": WD}, "lineage": []})
    # a cluster-like request: the train records of class 0 nearest its mean (they pull the boundary most)
    cls0 = train[dataset.y[train] == 0]
    centre = dataset.x[cls0].reshape(len(cls0), -1).mean(0)
    far = np.argsort(-np.linalg.norm(dataset.x[cls0].reshape(len(cls0), -1) - centre, axis=1))
    forget = np.sort(cls0[far[:12]])
    keep = ~np.isin(train, forget)
    return dataset, ckpt, x, y, d, c, w0, forget, keep


def _puma(dataset, ckpt, forget, **options) -> torch.Tensor:
    retain = np.setdiff1d(dataset.train_indices(), forget)
    config = parse_options(Puma.Config, {"solver": "exact", "damping": "0", "reweight": "false", "eta": "1",
                                         "delta": "1000", "delta_mode": "absolute", "reweight_sample": "0",
                                         "check_sample": "0", "cache": "false", "removal_loss": "cross-entropy",
                                         **options}, owner="method 'puma'")
    outcome = Puma().forget(Request(ckpt, dataset, forget, retain, "cpu", 0), config)
    return torch.cat([outcome.state[k].reshape(-1) for k in ckpt.state]).double()


def test_one_step_at_eta_1_is_the_exact_newton_removal_step_and_more_steps_approach_retraining(blobs_manifest):
    dataset, ckpt, x, y, d, c, w0, forget, keep = _setup(blobs_manifest)
    xr, yr = x[torch.from_numpy(keep)], y[torch.from_numpy(keep)]
    grad = torch.func.grad(lambda w: _objective(w, xr, yr, d, c))(w0)
    hess = torch.func.hessian(lambda w: _objective(w, xr, yr, d, c))(w0)
    newton = w0 - torch.linalg.solve(hess, grad)
    retrained = _fit(xr, yr, d, c, start=w0)

    one = _puma(dataset, ckpt, forget, max_steps="1")
    many = _puma(dataset, ckpt, forget, max_steps="6", step_tol="0")
    move = float((newton - w0).norm())
    off_newton = float((one - newton).norm()) / move
    d_one, d_many = float((one - retrained).norm()), float((many - retrained).norm())
    print(f"Newton move {move:.4g}; PUMA one step vs Newton: {off_newton:.2e} of the move; "
          f"distance to retrained: one step {d_one:.4g}, multi-step {d_many:.4g}")
    assert move > 1e-3                      # the request really moves the optimum
    assert off_newton < 2e-3                # float32 weights: equal up to rounding
    assert d_many < 0.5 * d_one             # the re-linearised steps land closer to retraining


def test_an_improving_criterion_never_stops_the_eta_walk_and_a_worsening_one_does():
    class Grid:
        eta_min, eta_max, eta_grid = 0.1, 1000.0, 4

    chosen, walk = choose_eta(lambda eta: -eta, bound=0.01, settings=Grid)   # C only improves
    assert chosen == 1000.0 and walk["eta_position"] == "top of the grid"
    chosen, walk = choose_eta(lambda eta: 0.001 * eta, bound=0.01, settings=Grid)   # worse by 0.001 eta
    assert chosen is not None and chosen <= 10.0 < chosen * 10 ** 0.25 + 1e-9
    assert all(v <= 0.01 for k, v in walk["eta_tried"].items() if float(k) <= chosen)
    chosen, walk = choose_eta(lambda eta: 1.0, bound=0.01, settings=Grid)   # worse even at the smallest eta
    assert chosen is None and list(walk["eta_tried"]) == ["0.1"]


def test_the_retrain_estimate_is_the_vote_of_the_nearest_remaining_records():
    from types import SimpleNamespace

    from unlearn_cli.methods.puma_sets import retrain_estimate

    rng = np.random.default_rng(0)
    inside = rng.normal(0, 0.1, size=(10, 2))             # a class-0 cluster ...
    around = rng.normal(0, 1.0, size=(200, 2)) * 3 + 0.5  # ... inside class 1's region
    far = rng.normal(10, 0.5, size=(50, 2))               # the rest of class 0, far away
    x = np.concatenate([inside, around, far]).astype(np.float32)
    y = np.array([0] * 10 + [1] * 200 + [0] * 50)
    ds = SimpleNamespace(x=x, y=y, n=len(y), num_classes=2)
    forget, remaining = np.arange(10), np.arange(10, len(y))
    est = retrain_estimate(ds, forget, remaining)
    assert est["accuracy"] == 0.0 and est["confidence"] < 0.2   # without the cluster, class 1 surrounds it
    est = retrain_estimate(ds, np.arange(250, 260), np.setdiff1d(np.arange(len(y)), np.arange(250, 260)))
    assert est["accuracy"] == 1.0 and est["confidence"] == 1.0  # records inside their own class's mass stay
    # rescaled by how the model does against the same vote on held-out records: a model twice as accurate
    # there as the vote is expected to be twice as accurate on the forgotten records (capped at 1)
    heldout = np.arange(10, 20)                                   # class-1 records: the vote gets them right
    est = retrain_estimate(ds, forget, remaining, heldout, model_heldout=(0.5, 0.5))
    assert est["heldout_vote_accuracy"] == 1.0 and est["accuracy"] == 0.0 and est["confidence"] <= 0.1


def test_the_log_odds_removal_loss_keeps_its_gradient_where_cross_entropy_loses_it():
    from unlearn_cli.influence.criteria import LogOdds, Objective

    logits = torch.tensor([[9.0, 0.0, -1.0], [0.5, 0.2, 0.1], [-3.0, 4.0, 12.0]], dtype=torch.float64,
                          requires_grad=True)
    y = torch.tensor([0, 1, 2])
    p = torch.softmax(logits.detach(), 1)
    py = p[torch.arange(3), y]
    r = LogOdds().per_record(logits, y)
    assert torch.allclose(r, -torch.log(py / (1 - py)), rtol=1e-9)          # minus the true class's log-odds
    (g_r,) = torch.autograd.grad(r.sum(), logits)
    (g_l,) = torch.autograd.grad(Objective().per_record(logits, y).sum(), logits)
    confident = torch.tensor([0, 2])                                         # p_y > 0.999
    assert (py[confident] > 0.999).all()
    assert g_l[confident].norm(dim=1).max() < 2e-3                           # cross-entropy: ~nothing to step on
    assert g_r[confident].norm(dim=1).min() > 1.0                            # log-odds: q - e_y, size >= 1
    others = p.scatter(1, y[:, None], 0.0)
    assert torch.allclose(g_r, others / others.sum(1, keepdim=True) - torch.eye(3, dtype=torch.float64)[y])


def test_log_odds_step_at_eta_1_is_the_newton_step_with_the_records_swapped_for_their_unlikelihood(blobs_manifest):
    """removal_loss=log-odds, eta = 1: the records leave J and -log(1 - p_y) of each enters it with weight 1."""
    dataset, ckpt, x, y, d, c, w0, forget, keep = _setup(blobs_manifest)
    keep_t = torch.from_numpy(keep)
    xr, yr, xf, yf = x[keep_t], y[keep_t], x[~keep_t], y[~keep_t]

    def swapped(w: torch.Tensor) -> torch.Tensor:
        weight, bias = w[: c * d].view(c, d), w[c * d:]
        kept = torch.nn.functional.cross_entropy(xr @ weight.T + bias, yr, reduction="sum")
        p_true = torch.softmax(xf @ weight.T + bias, 1)[torch.arange(len(yf)), yf]
        return (kept - torch.log1p(-p_true).sum()) / len(yr) + WD / 2 * (w @ w)

    hess = torch.func.hessian(lambda w: _objective(w, xr, yr, d, c))(w0)   # PUMA's H: the records' own curvature out
    expected = w0 - torch.linalg.solve(hess, torch.func.grad(swapped)(w0))
    one = _puma(dataset, ckpt, forget, max_steps="1", removal_loss="log-odds")
    off = float((one - expected).norm()) / float((expected - w0).norm())
    paper = _puma(dataset, ckpt, forget, max_steps="1")
    conf = lambda w: float(torch.softmax(xf @ w[: c * d].view(c, d).T + w[c * d:], 1)[torch.arange(len(yf)), yf].mean())  # noqa: E731
    print(f"log-odds step vs Newton on the swapped objective: {off:.2e} of the move; forget confidence "
          f"{conf(w0):.3f} -> {conf(one):.3f} (log-odds) vs {conf(paper):.3f} (cross-entropy)")
    assert off < 2e-3
    assert conf(one) < conf(paper) < conf(w0)

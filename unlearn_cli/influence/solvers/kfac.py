"""K-FAC and EK-FAC: a factorised Gauss-Newton for models too big for the exact matrix.

Per layer the GGN block is approximated by a Kronecker product A (x) G of the
second moments of the layer inputs (A) and of the output gradients (G)
(Martens & Grosse 2015; for convolutions, patches and spatial positions as in
Grosse & Martens 2016); the inputs and output gradients come from
``influence/layers.py``. EK-FAC (George et al. 2018) keeps the Kronecker
eigenbases but re-fits the eigenvalues to the per-record gradients projected
into them. BatchNorm affine parameters get a diagonal.

The factors are computed once per checkpoint (two passes over the curvature
records for EK-FAC) and cached; applying the inverse is a few small matrix
products per layer.
"""

from __future__ import annotations

import torch

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.layers import Layer, LayerTaps
from unlearn_cli.influence.scores import FunctionalModel, chunks
from unlearn_cli.influence.solvers.base import CurvatureSettings, Solver
from unlearn_cli.ops import dist
from unlearn_cli.ops.progress import Counter, Progress

BATCH = 512


def _split(n: int) -> bool:
    """Whether the ranks share the sums over ``n`` records (each has at least one), or each sums them all."""
    return dist.active() and n >= dist.world()


def _my_block(n: int) -> tuple[int, int]:
    """This rank's contiguous block of ``n`` records (all of them in a plain process)."""
    if not _split(n):
        return 0, n
    bounds = dist.shard_bounds(n)
    return bounds[dist.rank()], bounds[dist.rank() + 1]


def _all_reduce_sums(n: int, layers: list[Layer], bn_fields: tuple[str, ...], fields: tuple[str, ...]) -> None:
    """Sum the layers' partial factor sums over the ranks, in place (when ``_split(n)``)."""
    if not _split(n):
        return
    for layer in layers:
        for name in (bn_fields if layer.kind == "bn" else fields):
            setattr(layer, name, dist.all_reduce_sum(getattr(layer, name).contiguous()))


class KFACSolver(Solver):
    """Kronecker-factored GGN per layer, inverted in the factors' eigenbases."""

    name = "kfac"
    key_fields = ("fisher_samples",)
    factorised = True
    eigen_correction = False

    def __init__(self, settings: CurvatureSettings, fmodel: FunctionalModel, x, y, cached: dict | None = None,
                 progress: Progress | None = None):
        super().__init__(settings)
        self.fmodel = fmodel
        self.taps = LayerTaps(fmodel, settings.fisher_samples, settings.seed)
        self.layers = self.taps.layers
        if cached:
            self._load(cached)
        else:
            self._fit(x, progress)

    @classmethod
    def build(cls, settings, fmodel, x, y, cached=None, progress=None):
        return cls(settings, fmodel, x, y, cached=cached, progress=progress)

    # -- fitting -------------------------------------------------------------
    def _fit(self, x: torch.Tensor, progress: Progress | None = None) -> None:
        n = len(x)
        for layer in self.layers:
            layer.A = layer.G = layer.D = None
        # Under torchrun each rank sums its contiguous block of the records; the sums are all-reduced. Each
        # record's label draw is its own (seeded per record), so the split does not change what is summed.
        lo, hi = _my_block(n)
        dist.count("curvature_records", hi - lo)
        draws = self.taps.uniforms(n, stage=0)[lo:hi]
        tick = Counter(progress, "curvature: K-FAC factors", hi - lo)
        for sl in chunks(hi - lo, BATCH):
            xb = x[lo + sl.start: lo + sl.stop]
            for grads in self.taps.class_grads(xb, draws[sl]):
                for layer, g in zip(self.layers, grads):
                    if layer.kind == "bn":
                        d = (layer.bn_grads(g) ** 2).sum(0)
                        layer.D = d if layer.D is None else layer.D + d
                        continue
                    gs = Layer.out_grads(g)                       # (n, T, out)
                    G = torch.einsum("nto,ntp->op", gs, gs)
                    layer.G = G if layer.G is None else layer.G + G
            for layer in self.layers:
                if layer.kind != "bn":
                    A = layer.a_factor_sum()                     # (in', in')
                    layer.A = A if layer.A is None else layer.A + A
            tick(len(xb))
        _all_reduce_sums(n, self.layers, ("D",), ("A", "G"))
        for layer in self.layers:
            if layer.kind == "bn":
                layer.D = layer.D / n
                continue
            sA, layer.UA = torch.linalg.eigh((layer.A / n).double())
            sG, layer.UG = torch.linalg.eigh((layer.G / n).double())
            layer.UA, layer.UG = layer.UA.to(x.dtype), layer.UG.to(x.dtype)
            layer.L = torch.outer(sG.clamp_min(0), sA.clamp_min(0)).to(x.dtype)
            layer.A = layer.G = None
        if self.eigen_correction:
            # The eigenvalue fit needs fewer records than the factors: a seeded subset.
            k = self.settings.ekfac_sample
            if 0 < k < n:
                gen = torch.Generator().manual_seed(self.settings.seed)   # the same subset on every rank
                idx = torch.randperm(n, generator=gen)[:k].sort().values.to(x.device)
                x = x[idx]
            self._correct_eigenvalues(x, progress)
        if dist.active():   # one set of factors for every rank, bit for bit (eigh may differ across machines)
            self._load(dist.broadcast_state(self.state()))

    def _correct_eigenvalues(self, x: torch.Tensor, progress: Progress | None = None) -> None:
        """EK-FAC: eigenvalues = mean squared per-record gradient in the Kronecker eigenbasis."""
        n = len(x)
        sums = {id(layer): None for layer in self.layers if layer.kind != "bn"}
        lo, hi = _my_block(n)
        draws = self.taps.uniforms(n, stage=1)[lo:hi]
        tick = Counter(progress, "curvature: EK-FAC eigenvalues", hi - lo)
        for sl in chunks(hi - lo, BATCH):
            xb = x[lo + sl.start: lo + sl.stop]
            acts = None
            for grads in self.taps.class_grads(xb, draws[sl]):
                if acts is None:
                    acts = {id(l): l.eigen_activations() for l in self.layers if l.kind != "bn"}
                for layer, g in zip(self.layers, grads):
                    if layer.kind == "bn":
                        continue
                    gs = Layer.out_grads(g) @ layer.UG               # (n, T, out) in G's eigenbasis
                    proj = torch.einsum("nto,nti->noi", gs, acts[id(layer)])
                    s = (proj**2).sum(0)
                    sums[id(layer)] = s if sums[id(layer)] is None else sums[id(layer)] + s
            tick(len(xb))
        for layer in self.layers:
            if layer.kind != "bn":
                layer.L = sums[id(layer)]
        _all_reduce_sums(n, self.layers, (), ("L",))
        for layer in self.layers:
            if layer.kind != "bn":
                layer.L = layer.L / n

    # -- applying ------------------------------------------------------------
    def _as_matrix(self, layer: Layer, v: torch.Tensor) -> torch.Tensor:
        out_dim = layer.UG.shape[0]
        W = v[layer.w].reshape(out_dim, -1)
        return torch.cat([W, v[layer.b][:, None]], 1) if layer.has_bias else W

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        d = self.settings.total_damping
        out = torch.empty_like(b)
        for layer in self.layers:
            if layer.kind == "bn":
                idx = torch.cat([torch.arange(layer.w.start, layer.w.stop), torch.arange(layer.b.start, layer.b.stop)])
                out[idx] = b[idx] / (layer.D + d)
                continue
            V = self._as_matrix(layer, b)
            X = layer.UG @ ((layer.UG.T @ V @ layer.UA) / (layer.L + d)) @ layer.UA.T
            if layer.has_bias:
                out[layer.w] = X[:, :-1].reshape(-1)
                out[layer.b] = X[:, -1]
            else:
                out[layer.w] = X.reshape(-1)
        return out

    # -- cache ---------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        state = {}
        for layer in self.layers:
            if layer.kind == "bn":
                state[f"{layer.prefix}.D"] = layer.D
            else:
                state[f"{layer.prefix}.UA"] = layer.UA
                state[f"{layer.prefix}.UG"] = layer.UG
                state[f"{layer.prefix}.L"] = layer.L
        return state

    def _load(self, cached: dict) -> None:
        try:
            for layer in self.layers:
                if layer.kind == "bn":
                    layer.D = cached[f"{layer.prefix}.D"]
                else:
                    layer.UA = cached[f"{layer.prefix}.UA"]
                    layer.UG = cached[f"{layer.prefix}.UG"]
                    layer.L = cached[f"{layer.prefix}.L"]
        except KeyError as exc:
            raise BadInput(f"curvature cache lacks factor {exc}; delete the sidecar to rebuild it") from None


class EKFACSolver(KFACSolver):
    """K-FAC's eigenbases with eigenvalues re-fitted to the projected per-record gradients (George et al. 2018)."""

    name = "ekfac"
    key_fields = ("fisher_samples", "ekfac_sample")
    eigen_correction = True

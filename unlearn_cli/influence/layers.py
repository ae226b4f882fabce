"""Per-layer taps: the inputs and output gradients of every Linear/Conv2d/BatchNorm layer.

The output gradients are those of C "pseudo-losses" sqrt(p_c) (z_c - p^T z)
per record, whose outer products sum exactly to the cross-entropy GGN, so no
labels are sampled (or, for K-FAC's factors, of cross-entropy against labels
drawn from the model's own p). Two users: the exact GGN's rows
(``pseudo_gradients``, used by ``curvature.ggn_rows``) and K-FAC/EK-FAC's
Kronecker factors (``solvers/kfac.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearn_cli.errors import BadInput
from unlearn_cli.influence.scores import FunctionalModel

class Layer:
    """One factorised layer: where its parameters sit in the flat vector, and its factors."""

    def __init__(self, prefix: str, module: nn.Module, slices: dict[str, slice]):
        self.prefix, self.module = prefix, module
        self.kind = "bn" if isinstance(module, nn.modules.batchnorm._BatchNorm) else (
            "conv" if isinstance(module, nn.Conv2d) else "linear")
        self.w = slices.get(f"{prefix}.weight")
        self.b = slices.get(f"{prefix}.bias")
        self.has_bias = self.b is not None
        self.A = self.G = self.UA = self.UG = self.L = self.D = None
        self.inputs: torch.Tensor | None = None
        self.output: torch.Tensor | None = None

    # -- per-record statistics --------------------------------------------------
    def activations(self, bias_column: bool = True) -> torch.Tensor:
        """Layer inputs as (n, T, in') (T = spatial positions; 1 for linear), with a ones column for bias."""
        a = self.inputs
        m = self.module
        if self.kind == "conv":
            a = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride).transpose(1, 2)
        else:
            a = a.reshape(a.shape[0], 1, -1)
        if self.has_bias and bias_column:
            a = torch.cat([a, torch.ones_like(a[..., :1])], 2)
        return a

    def a_factor_sum(self) -> torch.Tensor:
        """sum over records of (1/T) sum_t a_t a_t^T, with the bias row and column from sums (no ones copy)."""
        a = self.activations(bias_column=False)
        n, t, k = a.shape
        flat = a.reshape(n * t, k)
        aa = flat.T @ flat
        if self.has_bias:
            s = flat.sum(0)
            aa = torch.cat([torch.cat([aa, s[:, None]], 1),
                            torch.cat([s, s.new_tensor([float(n * t)])])[None]], 0)
        return aa / t

    def eigen_activations(self) -> torch.Tensor:
        """activations() @ UA, with the ones column folded in as UA's last row."""
        a = self.activations(bias_column=False)
        if self.has_bias:
            return a @ self.UA[:-1] + self.UA[-1]
        return a @ self.UA

    @staticmethod
    def out_grads(g: torch.Tensor) -> torch.Tensor:
        """Output gradients as (n, T, out)."""
        return g.flatten(2).transpose(1, 2) if g.dim() == 4 else g.reshape(g.shape[0], 1, -1)

    def bn_grads(self, g: torch.Tensor) -> torch.Tensor:
        """Per-record gradients of (weight, bias) of a BatchNorm in eval mode: (n, 2C)."""
        m = self.module
        x = self.inputs
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xhat = (x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
        dims = tuple(range(2, x.dim()))
        gw = (g * xhat).sum(dims) if dims else g * xhat
        gb = g.sum(dims) if dims else g
        return torch.cat([gw, gb], 1)

    def record_grads(self, g: torch.Tensor) -> torch.Tensor:
        """Per-record gradients of this layer's parameters, flattened in parameter order: (n, size)."""
        if self.kind == "bn":
            return self.bn_grads(g)
        full = torch.einsum("nto,nti->noi", self.out_grads(g), self.activations())
        if self.has_bias:
            return torch.cat([full[:, :, :-1].reshape(len(g), -1), full[:, :, -1]], 1)
        return full.reshape(len(g), -1)


def _pseudo_losses(z: torch.Tensor) -> list[torch.Tensor]:
    """sum_i sqrt(p_ic) (z_ic - p_i^T z_i) for each class c: their per-record gradient
    outer products sum to J^T (diag p - p p^T) J, the cross-entropy GGN."""
    p = torch.softmax(z, 1).detach()
    centred = z - (p * z).sum(1, keepdim=True)
    sq = p.sqrt()
    return [(sq[:, c] * centred[:, c]).sum() for c in range(z.shape[1])]


def _sampled_losses(z: torch.Tensor, uniforms: torch.Tensor) -> list[torch.Tensor]:
    """Cross-entropy against labels drawn from the model's own p, scaled by 1/sqrt(S).

    E[g g^T] over the drawn label is the same GGN the pseudo-losses give exactly,
    at S backward passes per batch instead of one per class (the usual K-FAC
    estimator; with thousands of records the factors barely notice the noise).
    ``uniforms`` (records x S, in [0, 1)) pick the labels by inverse CDF, so each
    record's draw is fixed by its own numbers, whichever chunk or rank it lands in.
    """
    p = torch.softmax(z, 1).detach()
    cdf = p.cumsum(1)
    out = []
    samples = uniforms.shape[1]
    for s in range(samples):
        u = uniforms[:, s: s + 1].to(device=z.device, dtype=cdf.dtype)
        drawn = (cdf[:, :-1] <= u * cdf[:, -1:]).sum(1)
        out.append(F.cross_entropy(z, drawn, reduction="sum") / samples**0.5)
    return out


class LayerTaps:
    """The model's Linear/Conv2d/BatchNorm layers, with hooks that capture their
    inputs and the per-record gradients of each pseudo-loss at their outputs."""

    def __init__(self, fmodel: FunctionalModel, fisher_samples: int = 0, seed: int = 0):
        self.fmodel = fmodel
        self.fisher_samples = fisher_samples
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.layers = self._find_layers(fmodel)

    @staticmethod
    def _find_layers(fmodel: FunctionalModel) -> list[Layer]:
        slices, offset = {}, 0
        for name, p in fmodel.params.items():
            slices[name] = slice(offset, offset + p.numel())
            offset += p.numel()
        layers, covered = [], set()
        for prefix, module in fmodel.module.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.modules.batchnorm._BatchNorm)):
                if isinstance(module, nn.Conv2d) and module.groups != 1:
                    continue
                own = [f"{prefix}.{n}" for n, _ in module.named_parameters(recurse=False)]
                own = [n for n in own if n in slices]
                if own:
                    layers.append(Layer(prefix, module, slices))
                    covered.update(own)
        missing = [n for n in slices if n not in covered]
        if missing:
            raise BadInput(
                f"kfac/ekfac cannot factorise parameters {missing[:3]} (only Linear, Conv2d and BatchNorm "
                "layers); use --set solver=cg"
            )
        return layers

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        handles = []
        for layer in self.layers:
            def hook(module, inputs, output, layer=layer):
                layer.inputs = inputs[0].detach()
                layer.output = output
            handles.append(layer.module.register_forward_hook(hook))
        try:
            params = {k: p.detach().requires_grad_(True) for k, p in self.fmodel.params.items()}
            return self.fmodel(params, xb)
        finally:
            for h in handles:
                h.remove()

    def uniforms(self, n: int, stage: int) -> torch.Tensor:
        """The label draws of ``n`` records for one pass (``stage``): seeded, the same on every rank."""
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, stage]).generate_state(1)[0]))
        return torch.rand(n, max(self.fisher_samples, 1), generator=gen, dtype=torch.float64)

    def class_grads(self, xb: torch.Tensor, uniforms: torch.Tensor | None = None):
        """Yield per-layer output gradients of each pseudo-loss for a batch (``uniforms``: its records' label
        draws when fisher_samples > 0; drawn from the taps' generator when not given)."""
        z = self.forward(xb)
        outputs = [layer.output for layer in self.layers]
        samples = self.fisher_samples
        if samples and uniforms is None:
            uniforms = torch.rand(len(xb), samples, generator=self.generator, dtype=torch.float64)
        losses = _sampled_losses(z, uniforms) if samples else _pseudo_losses(z)
        for i, loss in enumerate(losses):
            grads = torch.autograd.grad(loss, outputs, retain_graph=i < len(losses) - 1)
            yield grads


def pseudo_gradients(fmodel: FunctionalModel, xb: torch.Tensor) -> torch.Tensor:
    """(n, C, P) per-record gradients of the C pseudo-losses, by layer hooks.

    U_i = these rows gives the exact GGN as (1/N) sum_i U_i^T U_i; plain
    autograd (C backward passes) is far cheaper than vmap(jacrev) here.
    Raises BadInput when a parameter is not in a Linear/Conv2d/BatchNorm layer.
    """
    taps = LayerTaps(fmodel)
    rows = []
    for grads in taps.class_grads(xb):
        parts = [None] * len(fmodel.params)
        order = {name: i for i, name in enumerate(fmodel.params)}
        for layer, g in zip(taps.layers, grads):
            flat = layer.record_grads(g)
            if layer.kind == "bn":
                parts[order[f"{layer.prefix}.weight"]] = flat[:, : flat.shape[1] // 2]
                parts[order[f"{layer.prefix}.bias"]] = flat[:, flat.shape[1] // 2 :]
                continue
            w_size = layer.w.stop - layer.w.start
            parts[order[f"{layer.prefix}.weight"]] = flat[:, :w_size]
            if layer.has_bias:
                parts[order[f"{layer.prefix}.bias"]] = flat[:, w_size:]
        rows.append(torch.cat(parts, 1))
    return torch.stack(rows, 1)

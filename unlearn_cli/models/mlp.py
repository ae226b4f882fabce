"""Fully connected models: multinomial logistic regression and FlexibleFCN.

FlexibleFCN is the PUMA paper's Listing 1 (appendix A): linear layers of the
given widths with one shared activation (relu or sigmoid) between them and none
after the last. The paper uses hidden widths 64 and 32 for the synthetic and
UCI data sets.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class FlexibleFCN(nn.Module):
    def __init__(self, neurons: Sequence[int], activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "sigmoid"):
            raise TypeError(f"activation must be relu or sigmoid, got {activation!r}")
        self.layers = nn.ModuleList(
            nn.Linear(neurons[i], neurons[i + 1]) for i in range(len(neurons) - 1)
        )
        self.activation = nn.ReLU() if activation == "relu" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (64, 32),
    activation: str = "relu",
) -> FlexibleFCN:
    width = math.prod(input_shape)
    return FlexibleFCN([width, *hidden, num_classes], activation)


def build_linear(input_shape: Sequence[int], num_classes: int) -> FlexibleFCN:
    """Multinomial logistic regression: a FlexibleFCN with no hidden layer."""
    return FlexibleFCN([math.prod(input_shape), num_classes])

"""DenseNet from the PUMA paper's Listing 2 (after Huang et al. 2017).

The listing is the CIFAR DenseNet-BC layout: a 3x3 stem with 2*growth planes,
four dense stages of bottleneck blocks separated by transitions that halve the
spatial size and compress channels by ``reduction``, then BN-ReLU, average
pooling and one linear layer. The paper's sizes (growth 12, larger blocks) do
not train on two CPU cores in minutes, so the defaults here are growth 6 and
two blocks per stage (about 15k parameters on 1x28x28, 10 classes); the layout is unchanged.
``last_pool_size`` is derived from the input (28 -> 3 after three halvings,
per side, so non-square inputs work), where the listing hard-codes 4 for 32x32.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """BN-ReLU-Conv1x1(4g)-BN-ReLU-Conv3x3(g), output concatenated to the input."""

    def __init__(self, in_planes: int, growth_rate: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 then 2x2 average pooling."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(
        self,
        nblocks: Sequence[int],
        growth_rate: int,
        reduction: float,
        num_classes: int,
        channel: int,
        last_pool_size: tuple[int, int],
    ):
        super().__init__()
        self.growth_rate = growth_rate
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(channel, planes, kernel_size=3, padding=1, bias=False)
        stages, transitions = [], []
        for i, n in enumerate(nblocks):
            stages.append(self._dense_layers(planes, n))
            planes += n * growth_rate
            if i < len(nblocks) - 1:
                out_planes = int(math.floor(planes * reduction))
                transitions.append(Transition(planes, out_planes))
                planes = out_planes
        self.dense = nn.ModuleList(stages)
        self.trans = nn.ModuleList(transitions)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)
        self.last_pool_size = last_pool_size

    def _dense_layers(self, in_planes: int, nblock: int) -> nn.Sequential:
        layers = []
        for _ in range(nblock):
            layers.append(Bottleneck(in_planes, self.growth_rate))
            in_planes += self.growth_rate
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        for stage, trans in zip(self.dense, self.trans):
            out = trans(stage(out))
        out = self.dense[-1](out)
        out = F.avg_pool2d(F.relu(self.bn(out)), self.last_pool_size)
        return self.linear(out.flatten(1))


def build_densenet(
    input_shape: Sequence[int],
    num_classes: int,
    nblocks: Sequence[int] = (2, 2, 2, 2),
    growth_rate: int = 6,
    reduction: float = 0.5,
) -> DenseNet:
    if len(input_shape) != 3:
        raise TypeError(f"densenet needs input_shape [channels, height, width], got {list(input_shape)}")
    channel, height, width = input_shape
    halvings = 2 ** (len(nblocks) - 1)
    pool = (height // halvings, width // halvings)
    if min(pool) < 1:
        raise TypeError(f"input {list(input_shape)} is too small for {len(nblocks)} dense stages")
    return DenseNet(tuple(nblocks), growth_rate, reduction, num_classes, channel, pool)

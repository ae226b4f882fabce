"""A small ResNet for 1x28x28 images (after He et al. 2016), with BatchNorm.

A 3x3 stem conv + BatchNorm, then one stage per entry of ``channels`` made of
``blocks`` basic residual blocks (conv3x3-BN-ReLU-conv3x3-BN plus the input,
then ReLU); every stage after the first halves the spatial size with a stride-2
first block whose shortcut is a 1x1 conv + BatchNorm. Global average pooling
and one linear layer finish it. The defaults (channels 8,16,32, one block per
stage: about 20k parameters on 1x28x28 with 10 classes) train mnist-5k in well
under a minute on two CPU cores.

It is the built-in network with BatchNorm running statistics in the way of
unlearning: the influence engine evaluates it in eval mode (running statistics
are buffers, held fixed), and each method's ``details`` says what it does with
them (README, "BatchNorm").
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int], blocks: Sequence[int]):
        super().__init__()
        planes = channels[0]
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        stages = []
        for i, (width, n) in enumerate(zip(channels, blocks)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(planes, width, stride=2 if i > 0 and j == 0 else 1))
                planes = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.bn1(self.conv1(x))))
        return self.linear(out.mean((2, 3)))


def build_resnet(
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (8, 16, 32),
    blocks: Sequence[int] | int = 1,
) -> ResNet:
    """``channels``: width of each stage (one stage per entry); ``blocks``: basic blocks per
    stage, one number for every stage or one per stage (at least one each)."""
    if len(input_shape) != 3:
        raise TypeError(f"resnet needs input_shape [channels, height, width], got {list(input_shape)}")
    channels = [int(c) for c in channels]
    blocks = [int(blocks)] * len(channels) if isinstance(blocks, int) else [int(b) for b in blocks]
    if not channels or len(blocks) != len(channels):
        raise TypeError(f"resnet needs one block count per stage: channels {channels}, blocks {blocks}")
    if min(channels) < 1 or min(blocks) < 1:
        raise TypeError(f"resnet channels and blocks must be positive, got {channels} and {blocks}")
    _, height, width = input_shape
    halvings = 2 ** (len(channels) - 1)
    if min(height, width) < halvings:
        raise TypeError(f"input {list(input_shape)} is too small for {len(channels)} resnet stages")
    return ResNet(int(input_shape[0]), int(num_classes), channels, blocks)

"""A small plain-PyTorch classifier: the model "you" trained with your own code.

``unlearn`` rebuilds it from an import path (``--arch model:build``) by calling
``build(input_shape=..., num_classes=..., **options)``, so the builder takes
the input shape and class count by keyword and every other argument
(here ``width``) has a default and a type annotation (``--arch-opt width=32``
is typed by it).
"""

from __future__ import annotations

import math

from torch import nn


def build(input_shape, num_classes: int, width: int = 32) -> nn.Module:
    """An MLP: flatten, two hidden ReLU layers of ``width`` units, a linear head."""
    features = math.prod(int(d) for d in input_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, int(num_classes)),
    )

"""Small torch models sized for the bundled data sets.

They are deliberately tiny (thousands to tens of thousands of parameters): every federated
round of an audit runs each client's update through a real aggregation protocol, shadow models
are trained by the dozen, and gradient inversion differentiates through the model hundreds of
times. They hold parameters only (no BatchNorm buffers), so a state_dict delta is exactly the
trainable update, and every parameter receives a gradient, so an update is a full gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from attacks.data import Dataset

__all__ = ["MLP", "SmallCNN", "make_model", "Activation"]

Activation = Literal["relu", "sigmoid", "tanh"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """A multilayer perceptron over the flattened input.

    The last layer is a plain ``Linear`` named ``head``: iDLG reads the label from its weight
    gradient, which needs non-negative inputs to it (ReLU or sigmoid before it).
    """

    def __init__(self, in_features: int, n_classes: int, hidden: Sequence[int] = (128,),
                 activation: Activation = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(nn.Module):
    """Two stride-2 convolutions and a linear head, for 1-channel images of any side >= 4.

    Strided convolutions instead of pooling keep the network differentiable almost everywhere
    in its input (max pooling routes gradients to one pixel), which inversion attacks rely on.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, channels: Sequence[int] = (16, 32),
                 activation: Activation = "relu") -> None:
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, stride=2, padding=1), _activation(activation)]
            c, h, w = out, math.ceil(h / 2), math.ceil(w / 2)
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_model(kind: Literal["mlp", "cnn"], dataset: Dataset, *, seed: int = 0,
               hidden: Sequence[int] = (128,), channels: Sequence[int] = (16, 32),
               activation: Activation = "relu") -> nn.Module:
    """A freshly initialised model for ``dataset``; the same ``seed`` gives the same weights.

    The initialisation draws from a private generator state, so building a model never moves
    the caller's global torch RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "mlp":
            return MLP(math.prod(dataset.input_shape), dataset.n_classes, hidden, activation)
        if kind == "cnn":
            if not dataset.is_image:
                raise ValueError(f"a CNN needs image data; {dataset.name!r} is tabular")
            shape = dataset.input_shape
            return SmallCNN((shape[0], shape[1], shape[2]), dataset.n_classes, channels, activation)
    raise ValueError(f"unknown model kind {kind!r}; choose 'mlp' or 'cnn'")

"""From a disclosed update back to the gradient it came from.

In FedSGD (one local SGD step of rate ``lr``, full batch) a client with weight ``w`` sends
``w * (theta' - theta) = -lr * w * grad``, so the adversary, who knows ``lr`` and ``w`` (both
public in FedAvg), recovers the client's gradient exactly, up to the encoding's rounding. A
sum over a group of clients gives ``-lr * sum(w_i * grad_i)``, i.e. the gradient of the
weighted mean loss over every example of the group: a *batch* gradient, which is why secure
aggregation leaves inversion attacks a batch problem, not a single-image one. After ``k > 1``
local steps, ``-update / (lr * k)`` is only the average gradient along the client's path,
an approximation the attacks then inherit.
"""

from __future__ import annotations

import secrets

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from privagg import UpdateSpec, unflatten

__all__ = ["Gradient", "model_gradient", "gradient_from_update", "add_gaussian_noise", "flat_gradient"]

Gradient = list[torch.Tensor]
"""One tensor per model parameter, in ``model.parameters()`` order."""


def model_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Gradient:
    """The gradient of the mean cross-entropy of ``model`` on ``(x, y)`` (the ground truth)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    return [g.detach() for g in torch.autograd.grad(loss, params)]


def gradient_from_update(update: npt.ArrayLike, spec: UpdateSpec, model: nn.Module, *, lr: float,
                         weight: float = 1.0, local_steps: int = 1) -> Gradient:
    """The gradient behind a (summed) update ``update`` of ``weight`` total client weight.

    ``spec`` describes the update's layout (state_dict names); the result follows
    ``model.parameters()`` order, in the dtype of the model's parameters.
    """
    if lr <= 0 or weight <= 0 or local_steps < 1:
        raise ValueError("lr and weight must be positive and local_steps at least 1")
    state = unflatten(np.asarray(update, dtype=np.float64), spec)
    out = []
    for name, param in model.named_parameters():
        if name not in state:
            raise ValueError(f"the update has no entry for parameter {name!r}")
        out.append((-state[name].to(torch.float64) / (lr * weight * local_steps)).to(param.dtype))
    return out


def add_gaussian_noise(gradient: Gradient, std: float, *, seed: int | None = None) -> Gradient:
    """``gradient`` plus i.i.d. ``N(0, std^2)`` on every coordinate (a local-DP style defence).

    The noise here is for experiments on how noise degrades inversion; DP modes add their own
    noise through the protocol and their disclosure already carries it.
    """
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std!r}")
    generator = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(62))
    return [g + std * torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in gradient]


def flat_gradient(gradient: Gradient) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in gradient])

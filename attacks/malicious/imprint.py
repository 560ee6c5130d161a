"""Trap weights: a model a malicious server crafts so that single inputs can be read back out
of an aggregated update (the "imprint" module of Fowl et al. 2022, "Robbing the Fed: Directly
Obtaining Private Data in Federated Learning with Modified Models", ICLR).

Why it works. For one example ``x`` through ``a = ReLU(W x + b)`` the gradient of row ``i`` is
``dL/dW_i = g_i x`` and ``dL/db_i = g_i``: their ratio *is* the input. A sum over many examples
mixes them, so the server makes the rows *bins*: every trap unit measures the same linear
statistic ``m = w . x`` (``W_i = w``) and switches on above its own threshold (``b_i = -c_i``,
``c_1 < c_2 < ...``), and all of them feed the next layer through the same column ``v``, so
an example's ``g_i = v . (p - y)`` is the same for every unit it switches on. Unit ``i`` then
accumulates every example with ``m > c_i``, and the difference of two neighbouring units holds
exactly the examples whose statistic falls between their thresholds::

    (dW_i - dW_{i+1}) / (db_i - db_{i+1}) = x     when one example fell into bin (c_i, c_{i+1}]

Sums of gradients are what secure aggregation releases, and the difference of sums is the sum
of differences: a bin holding one example *in the whole federation* gives that example back,
bit for bit up to the encoding's rounding, from the aggregate alone. The thresholds are
quantiles of ``m`` over public data of the same kind (the server's own examples), so each bin
catches about ``1/k`` of the examples; with more bins than examples in a round most inputs
sit alone in their bin.

The statistic is a random unit direction rather than the paper's mean brightness: digits have
only 1025 distinct brightness values, and ties put two images into one bin.

The trap units live in the hidden layer of an ordinary :class:`attacks.models.MLP`: a model
whose trap units are *disarmed* (zero weights, bias ``-1``: the ReLU never opens, so their
gradient is exactly zero) is an honest-looking model of the same shape, which is what lets the
server send it to everyone but its target (model inconsistency, see
:mod:`attacks.malicious.inconsistency`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from attacks.models import MLP
from privagg import UpdateSpec, unflatten

__all__ = ["TrapLayout", "trap_model", "disarm", "arm", "recover_inputs"]


@dataclass(frozen=True)
class TrapLayout:
    """Where the trap units sit: hidden units ``first .. first + bins - 1`` of the layer whose
    parameters are ``layer.weight`` / ``layer.bias``, read by ``head.weight``."""

    layer: str
    head: str
    first: int
    bins: int

    @property
    def units(self) -> slice:
        return slice(self.first, self.first + self.bins)


def _linear(model: nn.Module, name: str) -> nn.Linear:
    module = model.get_submodule(name)
    if not isinstance(module, nn.Linear):
        raise ValueError(f"{name!r} is not a linear layer")
    return module


def trap_model(in_features: int, n_classes: int, *, honest_units: int = 32, bins: int = 32,
               seed: int = 0) -> tuple[MLP, TrapLayout]:
    """A one-hidden-layer MLP of ``honest_units + bins`` ReLU units whose last ``bins`` units
    are disarmed: the honest model every client may receive, and the layout of its traps."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(in_features, n_classes, hidden=(honest_units + bins,))
    layout = TrapLayout("body.1", "head", honest_units, bins)
    return disarm(model, layout), layout


@torch.no_grad()
def disarm(model: nn.Module, layout: TrapLayout) -> nn.Module:
    """A copy of ``model`` whose trap units never open (zero gradient on all their weights)."""
    out = copy.deepcopy(model)
    layer, head = _linear(out, layout.layer), _linear(out, layout.head)
    layer.weight[layout.units] = 0.0
    layer.bias[layout.units] = -1.0
    head.weight[:, layout.units] = 0.0
    return out


@torch.no_grad()
def arm(model: nn.Module, layout: TrapLayout, public_inputs: torch.Tensor, *, seed: int = 0,
        head_scale: float = 0.1) -> nn.Module:
    """A copy of ``model`` with its trap units turned into imprint bins.

    ``public_inputs``: examples of the same kind the server holds itself; the bin thresholds are
    quantiles of the measured statistic over them (the lowest a little below their minimum, so
    that no example falls under every bin). ``head_scale``: size of the shared outgoing column;
    small, so that the traps do not saturate the softmax (a saturated, correct prediction has
    a zero gradient and would vanish from every bin).
    """
    out = copy.deepcopy(model)
    layer, head = _linear(out, layout.layer), _linear(out, layout.head)
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(layer.in_features, generator=generator, dtype=torch.float64)
    direction /= direction.norm()
    measured = public_inputs.reshape(len(public_inputs), -1).double() @ direction
    levels = torch.arange(layout.bins, dtype=torch.float64) / layout.bins
    thresholds = torch.quantile(measured, levels)
    thresholds[0] = measured.min() - 1.0  # everything opens the first unit
    column = torch.randn(head.out_features, generator=generator, dtype=torch.float64) * head_scale
    layer.weight[layout.units] = direction.to(layer.weight.dtype)
    layer.bias[layout.units] = (-thresholds).to(layer.bias.dtype)
    head.weight[:, layout.units] = column.to(head.weight.dtype).unsqueeze(1)
    return out


def recover_inputs(update: npt.ArrayLike, spec: UpdateSpec, layout: TrapLayout, input_shape: tuple[int, ...], *,
                   tolerance: float) -> torch.Tensor:
    """Every input the trap bins of a (summed) update give back, shaped ``(n, *input_shape)``.

    Bins whose bias difference is at most ``tolerance`` (empty bins, or rounding noise of the
    encoding) are skipped; a bin that caught several examples yields their weighted mean, a
    blur the metrics then score as such. The attacker cannot tell the two apart, and does not
    need to: it looks at the pictures.
    """
    state = unflatten(np.asarray(update, dtype=np.float64), spec)
    weight = state[f"{layout.layer}.weight"][layout.units].double()
    bias = state[f"{layout.layer}.bias"][layout.units].double()
    zero_w, zero_b = torch.zeros_like(weight[:1]), torch.zeros_like(bias[:1])
    d_weight = weight - torch.cat([weight[1:], zero_w])
    d_bias = bias - torch.cat([bias[1:], zero_b])
    keep = d_bias.abs() > tolerance
    images = d_weight[keep] / d_bias[keep].unsqueeze(1)
    return images.reshape(-1, *input_shape).to(torch.float32)

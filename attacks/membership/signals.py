"""Per-example signals a black-box membership attack reads from a model's outputs.

* ``loss``: cross-entropy of the true label (LOSS attack, Yeom et al. 2018);
* ``scaled_logit``: ``log(p_y / (1 - p_y))`` of the true-class probability, the statistic LiRA
  models as Gaussian (Carlini et al. 2022). It is computed as ``z_y - logsumexp_{c != y} z_c``
  from the logits ``z``, which equals the log-odds exactly and stays finite when ``p_y``
  rounds to 1 in float32 (the case for well-fitted members, the ones that matter);
* ``true_class_probability``: ``softmax(z / T)_y``, RMIA's signal (Zarifzadeh et al. 2024).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = ["logits", "loss", "scaled_logit", "true_class_probability"]


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
    """The model's logits on ``x`` in eval mode, as float64."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double()
    model.train(was_training)
    return out


def _true(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return z.gather(1, y.view(-1, 1)).squeeze(1)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> npt.NDArray[np.float64]:
    """Per-example cross-entropy loss."""
    return nn.functional.cross_entropy(logits(model, x), y, reduction="none").numpy()


def scaled_logit(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> npt.NDArray[np.float64]:
    """Per-example ``log(p_y / (1 - p_y))``, computed stably from the logits."""
    z = logits(model, x)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    return (_true(z, y) - torch.logsumexp(others, dim=1)).numpy()


def true_class_probability(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                           temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Per-example ``softmax(logits / temperature)`` of the true class."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    return _true(torch.softmax(logits(model, x) / temperature, dim=1), y).numpy()

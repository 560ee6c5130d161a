"""The LOSS attack (Yeom et al. 2018): members have lower loss.

Training minimises the loss of exactly the training examples, so on average a member's loss is
lower than a non-member's. The membership score is therefore the *negated* loss (higher score,
more likely a member). It needs no shadow models, which makes it the baseline every other
attack must beat; it is weak at low false-positive rates because it ignores that some examples
are simply easy (low loss whether seen or not), which is what LiRA and RMIA correct for.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from attacks.membership.signals import loss

__all__ = ["loss_attack"]


def loss_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> npt.NDArray[np.float64]:
    """Membership scores (higher = member): minus each example's cross-entropy loss."""
    return -loss(model, x, y)

"""Reading labels out of the last layer's gradient (iDLG, Zhao et al. 2020).

For cross-entropy after a final linear layer ``z = W h + b``, the gradient of row ``c`` of
``W`` for one example is ``(p_c - 1[c = y]) * h``. When ``h >= 0`` (ReLU or sigmoid before the
head) the row of the true label is the only one with non-positive entries, so the label is the
row with the smallest sum. For a batch, rows of labels present in the batch collect the
negative terms; taking the ``k`` most negative rows recovers ``k`` *distinct* labels (the
heuristic of Yin et al. 2021). Repeated labels in a batch are beyond it: asked for more labels
than classes, it cycles through the classes in the same order, which is a guess, stated so.
"""

from __future__ import annotations

import torch

from attacks.inversion.gradients import Gradient

__all__ = ["last_layer_weight_gradient", "infer_labels"]


def last_layer_weight_gradient(gradient: Gradient, n_classes: int) -> torch.Tensor:
    """The gradient of the last 2-D parameter with ``n_classes`` rows (the classifier's weight)."""
    for g in reversed(gradient):
        if g.ndim == 2 and g.shape[0] == n_classes:
            return g
    raise ValueError(f"no {n_classes}-row weight matrix among the gradient's tensors")


def infer_labels(gradient: Gradient, n_classes: int, count: int = 1) -> torch.Tensor:
    """The ``count`` labels the gradient points to (most negative row sums first; distinct up
    to ``n_classes``, then repeating in the same order)."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    row_sums = last_layer_weight_gradient(gradient, n_classes).sum(dim=1)
    order = torch.argsort(row_sums).to(torch.int64)
    return order.repeat((count + n_classes - 1) // n_classes)[:count]

"""How close a reconstruction is to the examples it came from.

Reconstructions come back in no particular order and possibly fewer than the true examples
(one image from a ten-client aggregate), so each reconstruction is first **matched** to a
distinct true example minimising the total mean squared error (Hungarian algorithm); every
metric is then the mean over matched pairs. With one reconstruction and ten true images this
is the best match: the adversary's best case against any one of the clients, the figure that
matters for privacy.

* PSNR ``10 log10(range^2 / MSE)`` in dB, on the reconstruction clipped to the data range (the
  adversary knows the range, so anything outside it is free to fix). A perfect match is capped
  at :data:`MAX_PSNR_DB` (MSE floored at ``range^2 * 1e-20``) so reports stay finite.
* SSIM (Wang et al. 2004) per image via ``skimage.metrics.structural_similarity`` with its
  defaults (7x7 uniform window, ``K1=0.01``, ``K2=0.03``) over the given data range; images
  only.
* label accuracy: the fraction of matched pairs whose reconstructed label is the true label
  of the example it was matched to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["MAX_PSNR_DB", "InversionMetrics", "psnr", "ssim", "match", "reconstruction_quality"]

MAX_PSNR_DB = 200.0


def _as_array(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)


def psnr(reconstruction: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, *,
         data_range: float) -> float:
    """Peak signal-to-noise ratio of one example, in dB."""
    a, b = _as_array(reconstruction), _as_array(truth)
    mse = max(float(np.mean((a - b) ** 2)), data_range**2 * 1e-20)
    return min(10.0 * math.log10(data_range**2 / mse), MAX_PSNR_DB)


def ssim(reconstruction: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray, *, data_range: float) -> float:
    """Structural similarity of one (single- or multi-channel, channel-first) image."""
    from skimage.metrics import structural_similarity

    a, b = _as_array(reconstruction), _as_array(truth)
    if a.ndim == 3 and a.shape[0] == 1:
        a, b = a[0], b[0]
    if a.ndim not in (2, 3) or a.shape != b.shape:
        raise ValueError(f"SSIM needs two images of one shape, got {a.shape} and {b.shape}")
    side = min(a.shape[-2:]) if a.ndim == 3 else min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        raise ValueError(f"images of side {side} are too small for SSIM")
    if a.ndim == 3:
        return float(structural_similarity(a, b, data_range=data_range, win_size=window, channel_axis=0))
    return float(structural_similarity(a, b, data_range=data_range, win_size=window))


def match(reconstructions: torch.Tensor | np.ndarray, truths: torch.Tensor | np.ndarray) -> list[tuple[int, int]]:
    """Pairs ``(reconstruction index, truth index)``: each reconstruction to a distinct truth,
    minimising the summed MSE (the larger side keeps unmatched items)."""
    a = _as_array(reconstructions).reshape(len(reconstructions), -1)
    b = _as_array(truths).reshape(len(truths), -1)
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return sorted(zip(rows.tolist(), cols.tolist()))


@dataclass(frozen=True)
class InversionMetrics:
    """Reconstruction quality over matched pairs (see the module docstring)."""

    psnr_db: float
    ssim: float | None
    label_accuracy: float
    per_example_psnr_db: tuple[float, ...]
    pairs: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict[str, float | None]:
        """The report keys ``psnr_db``, ``ssim``, ``label_accuracy``."""
        return {"psnr_db": self.psnr_db, "ssim": self.ssim, "label_accuracy": self.label_accuracy}


def reconstruction_quality(reconstructions: torch.Tensor, labels: torch.Tensor, truths: torch.Tensor,
                           true_labels: torch.Tensor, *, data_range: tuple[float, float] | None = None,
                           image: bool | None = None) -> InversionMetrics:
    """Match reconstructions to true examples and measure PSNR, SSIM and label accuracy.

    ``data_range``: ``(low, high)`` of the inputs; without it (tabular data) the range of the
    true examples is used and nothing is clipped. ``image``: compute SSIM (default: when the
    examples have a channel and two spatial dimensions).
    """
    rec = _as_array(reconstructions)
    tru = _as_array(truths)
    if rec.shape[1:] != tru.shape[1:]:
        raise ValueError(f"reconstructions {rec.shape[1:]} and truths {tru.shape[1:]} differ in shape")
    if data_range is not None:
        low, high = data_range
        rec = np.clip(rec, low, high)
    else:
        low, high = float(tru.min()), float(tru.max())
    span = max(high - low, 1e-12)
    pairs = match(rec, tru)
    per = tuple(psnr(rec[i], tru[j], data_range=span) for i, j in pairs)
    is_image = (rec.ndim == 4) if image is None else image
    structural = float(np.mean([ssim(rec[i], tru[j], data_range=span) for i, j in pairs])) if is_image else None
    lab, true_lab = np.asarray(labels).reshape(-1), np.asarray(true_labels).reshape(-1)
    correct = [lab[i] == true_lab[j] for i, j in pairs]
    return InversionMetrics(float(np.mean(per)), structural, float(np.mean(correct)), per, tuple(pairs))

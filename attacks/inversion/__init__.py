"""Update inversion: DLG, iDLG and Inverting Gradients on what a round's view discloses.

:func:`fedsgd_round` + :func:`invert_round` run the whole path (protocol round, disclosure,
gradient, reconstruction, metrics); the pieces are usable on their own.
"""

from attacks.inversion.gradients import Gradient, add_gaussian_noise, gradient_from_update, model_gradient
from attacks.inversion.labels import infer_labels
from attacks.inversion.quality import InversionMetrics, psnr, reconstruction_quality, ssim
from attacks.inversion.reconstruct import METHODS, InversionConfig, Reconstruction, reconstruct, total_variation
from attacks.inversion.scenario import InversionOutcome, fedsgd_round, invert_round

__all__ = [
    "Gradient", "add_gaussian_noise", "gradient_from_update", "model_gradient", "infer_labels", "InversionMetrics",
    "psnr", "reconstruction_quality", "ssim", "METHODS", "InversionConfig", "Reconstruction", "reconstruct",
    "total_variation", "InversionOutcome", "fedsgd_round", "invert_round",
]

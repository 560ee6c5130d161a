"""Differential privacy for aggregation: privacy events and interchangeable accountants (RDP,
PLD), noise calibration, and mechanisms (central, local, distributed discrete Gaussian) that
wrap any aggregator.

    eps = dp.epsilon(sampling_rate=0.01, noise_multiplier=1.1, steps=1000, delta=1e-5)
    sigma = dp.calibrate(target_epsilon=3.0, sampling_rate=0.01, steps=1000, delta=1e-5)
    private = dp.Private(SecAgg(neighbours="auto"),
                         dp.DistributedDiscreteGaussian(clip_norm=1.0, noise_multiplier=1.0,
                                                        min_clients=50, dimension=d),
                         dp.RdpAccountant(), budget=8.0)
"""

from dp.accountant import PrivacyAccountant
from dp.calibration import calibrate, epsilon, epsilon_and_order
from dp.clipping import clip_l2
from dp.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussianEvent,
    GaussianEvent,
    PoissonSampledEvent,
    PrivacyEvent,
    SelfComposedEvent,
    UnsupportedEvent,
    event_from_dict,
)
from dp.mechanisms import CentralGaussian, DistributedDiscreteGaussian, LocalGaussian, Mechanism
from dp.pld import PldAccountant
from dp.private import BudgetExceeded, Private
from dp.rdp import DEFAULT_ORDERS, RdpAccountant

__all__ = [
    "PrivacyAccountant", "calibrate", "epsilon", "epsilon_and_order", "clip_l2", "ComposedEvent",
    "DiscreteGaussianEvent", "DistributedDiscreteGaussianEvent", "GaussianEvent", "PoissonSampledEvent",
    "PrivacyEvent", "SelfComposedEvent", "UnsupportedEvent", "event_from_dict", "CentralGaussian",
    "DistributedDiscreteGaussian", "LocalGaussian", "Mechanism", "PldAccountant", "BudgetExceeded", "Private",
    "DEFAULT_ORDERS", "RdpAccountant",
]

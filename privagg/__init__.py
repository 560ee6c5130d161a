"""privagg: cryptographic privacy-preserving aggregation for federated learning.

The core: the sans-I/O aggregator interface, fixed-point encoding and flattening, typed wire
messages, the plaintext reference aggregator, the in-process driver and the mode registry.
Secure aggregation (``secagg``), CKKS (``he``) and differential privacy (``dp``) build on it.
"""

from privagg._version import __version__
from privagg.encoding import FixedPoint, TensorSpec, UpdateSpec, flatten, unflatten
from privagg.errors import (
    AggregationAborted,
    ConfigurationError,
    EncodingOverflow,
    InsecureParameters,
    InvalidUpdate,
    MalformedMessage,
    PrivaggError,
    ProtocolViolation,
)
from privagg.interface import (
    AggregationResult,
    Aggregator,
    ClientSession,
    ServerSession,
    ServerView,
    Traffic,
)
from privagg.plain import Plain
from privagg.registry import available_modes, make_aggregator, register_mode, unregister_mode
from privagg.simulate import simulate
from privagg.threats import HONEST_BUT_CURIOUS, OUTSIDER, Disclosure, ThreatModel, colluding

__all__ = [
    "__version__", "FixedPoint", "TensorSpec", "UpdateSpec", "flatten", "unflatten",
    "AggregationAborted", "ConfigurationError", "EncodingOverflow", "InsecureParameters",
    "InvalidUpdate", "MalformedMessage", "PrivaggError", "ProtocolViolation",
    "AggregationResult", "Aggregator", "ClientSession", "ServerSession", "ServerView", "Traffic",
    "Plain", "available_modes", "make_aggregator", "register_mode", "unregister_mode", "simulate",
    "HONEST_BUT_CURIOUS", "OUTSIDER", "Disclosure", "ThreatModel", "colluding",
]

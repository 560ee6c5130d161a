"""The one small hierarchy of errors privagg raises.

Every error names the problem and the offending *public* value (a client id, a length, a
parameter); none ever carries a key, a seed, a share or an input value.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "PrivaggError",
    "ConfigurationError",
    "InvalidUpdate",
    "EncodingOverflow",
    "MalformedMessage",
    "ProtocolViolation",
    "AggregationAborted",
    "InsecureParameters",
]


class PrivaggError(Exception):
    """Base class of every error raised on purpose by privagg."""


class ConfigurationError(PrivaggError, ValueError):
    """A parameter, option or argument is invalid (unknown mode, bad range, ...)."""


class InvalidUpdate(ConfigurationError):
    """A client's update cannot be aggregated: NaN or inf, wrong shape, unsupported dtype."""


class EncodingOverflow(PrivaggError, ValueError):
    """The sum of ``clients`` encoded inputs could wrap around modulo ``2**bits``.

    Raised before a round starts, so a round never yields a silently wrong sum.
    """

    def __init__(self, clients: int, bits: int, clip: float, scale: float) -> None:
        self.clients = clients
        self.bits = bits
        self.clip = clip
        self.scale = scale
        super().__init__(
            f"{clients} clients x range [-{clip:g}, {clip:g}] x scale {scale:g} "
            f"does not fit in 2^{bits - 1} (bits={bits}): use more bits, a smaller scale "
            f"or fewer clients"
        )


class MalformedMessage(PrivaggError, ValueError):
    """Bytes that do not parse as a valid privagg message (truncated, corrupt, oversized)."""


class ProtocolViolation(PrivaggError):
    """A well-formed message that the protocol refuses: replayed from another round,
    claimed by another sender, sent in the wrong stage, sent twice, or inconsistent."""


class AggregationAborted(PrivaggError):
    """The round cannot produce an exact aggregate and stops instead of guessing.

    ``reason`` is a human-readable sentence; ``client_ids`` names the clients involved
    (for instance the survivors when too few remain).
    """

    def __init__(self, reason: str, client_ids: Iterable[int] = ()) -> None:
        self.reason = reason
        self.client_ids = tuple(sorted(client_ids))
        shown = ", ".join(map(str, self.client_ids[:20]))
        if len(self.client_ids) > 20:
            shown += f", ... ({len(self.client_ids)} in all)"
        super().__init__(f"{reason} (clients: {shown})" if self.client_ids else reason)


class InsecureParameters(PrivaggError, ValueError):
    """Cryptographic parameters below the security level the mode promises."""

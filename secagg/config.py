"""``SecAgg``: the configuration object of Bonawitz et al. 2017 secure aggregation and SecAgg+.

``neighbours="all"`` is the original protocol (every pair of clients masks); an integer ``k``
or ``"auto"`` gives the SecAgg+ sparse graph (see :mod:`secagg.graph` for the defaults).
``security="active"`` adds signed keys, a model digest bound into every signature and the
consistency-check round, against a server that deviates from the protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privagg.encoding.fixed_point import FixedPoint, Rounding
from privagg.errors import ConfigurationError
from privagg.interface import Aggregator, ServerView
from privagg.threats import Disclosure, ThreatModel
from secagg.graph import check_threshold, default_neighbours, default_threshold, effective_neighbours
from secagg.identity import Identities, Roster

__all__ = ["SecAgg", "RoundParameters", "STAGES", "ACTIVE_STAGES"]

Security = Literal["semi-honest", "active"]

ADVERTISE, SHARE, MASKED, CONSISTENCY, UNMASK = (
    "advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")
STAGES = (ADVERTISE, SHARE, MASKED, UNMASK)
ACTIVE_STAGES = (ADVERTISE, SHARE, MASKED, CONSISTENCY, UNMASK)


@dataclass(frozen=True)
class RoundParameters:
    """What every party derives from the configuration and the round's roster."""

    roster: tuple[int, ...]
    neighbours: int
    threshold: int
    signatures_needed: int

    @property
    def complete(self) -> bool:
        return self.neighbours >= len(self.roster) - 1

    def x_coordinate(self, cid: int) -> int:
        """The Shamir evaluation point of ``cid``: its 1-based position in the sorted roster."""
        return self._index[cid] + 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {cid: i for i, cid in enumerate(self.roster)})


@dataclass(frozen=True)
class SecAgg(Aggregator):
    """Secure aggregation: the server learns only the sum of the clients it names.

    threshold: shares needed to rebuild a client's secrets (default: a strict majority of the
        ``k + 1`` share holders). neighbours: ``"all"`` (SecAgg), ``"auto"`` or an int (SecAgg+).
    modulus_bits, clip, scale, max_clients, rounding: the fixed-point encoding (see
        :class:`privagg.FixedPoint`). security: ``"semi-honest"`` or ``"active"``.
    roster / identities: Ed25519 public keys of the clients (active mode); when neither is
        given, :class:`Identities` are generated on demand, which suits simulations only.
    keep_masked_inputs: keep each masked vector in the server view (auditing) or only its size
        (the server then holds one running sum: O(params) memory).
    """

    threshold: int | None = None
    neighbours: int | Literal["all", "auto"] = "all"
    modulus_bits: int = 32
    security: Security = "semi-honest"
    clip: float = 1.0
    scale: float | None = None
    max_clients: int = 1024
    rounding: Rounding = "deterministic"
    roster: Roster | None = None
    identities: Identities | None = None
    keep_masked_inputs: bool = True
    fixed_point: FixedPoint = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed_point", FixedPoint(
            bits=self.modulus_bits, clip=self.clip, scale=self.scale, max_clients=self.max_clients,
            rounding=self.rounding))
        if self.security not in ("semi-honest", "active"):
            raise ConfigurationError(f"security must be 'semi-honest' or 'active', got {self.security!r}")
        if not (self.neighbours in ("all", "auto") or (isinstance(self.neighbours, int)
                                                         and not isinstance(self.neighbours, bool)
                                                         and self.neighbours >= 1)):
            raise ConfigurationError(f"neighbours must be 'all', 'auto' or a positive integer, got {self.neighbours!r}")
        if self.threshold is not None and (not isinstance(self.threshold, int) or isinstance(self.threshold, bool)):
            raise ConfigurationError(f"threshold must be an integer, got {self.threshold!r}")
        if self.active and self.roster is None and self.identities is None:
            object.__setattr__(self, "identities", Identities())

    @property
    def mode(self) -> str:  # type: ignore[override]
        return "secagg" if self.neighbours == "all" else "secagg+"

    @property
    def active(self) -> bool:
        return self.security == "active"

    @property
    def stages(self) -> tuple[str, ...]:
        return ACTIVE_STAGES if self.active else STAGES

    @property
    def encoding(self) -> FixedPoint:
        return self.fixed_point

    def min_included(self, clients: int) -> int:
        return self.parameters(range(clients)).threshold

    def with_encoding(self, encoding: FixedPoint) -> SecAgg:
        return replace(self, modulus_bits=encoding.bits, clip=encoding.clip, scale=encoding.scale,
                       max_clients=encoding.max_clients, rounding=encoding.rounding)

    def parameters(self, roster: Iterable[int]) -> RoundParameters:
        """Neighbour count, threshold and signature quorum for a round over ``roster``."""
        ids = tuple(sorted(roster))
        n = len(ids)
        wanted = None if self.neighbours == "all" else (
            default_neighbours(n) if self.neighbours == "auto" else self.neighbours)
        k = effective_neighbours(n, wanted)
        t = self.threshold if self.threshold is not None else default_threshold(k)
        check_threshold(t, k, active=self.active)
        # Two conflicting survivor sets must never both gather the quorum. Honest clients sign
        # once, colluding ones sign both: 2 * quorum > n + colluders must hold. Two thirds of the
        # roster tolerate fewer than n / 3 colluders (Bonawitz et al.'s active bound).
        quorum = max(t, 2 * n // 3 + 1) if self.active else 0
        return RoundParameters(ids, k, t, quorum)

    def public_roster(self, ids: Iterable[int]) -> Roster:
        if self.roster is not None:
            return self.roster
        assert self.identities is not None
        return self.identities.roster(ids)

    def _signing_key(self, cid: int, given: Ed25519PrivateKey | None) -> Ed25519PrivateKey | None:
        if not self.active:
            return None
        if given is not None:
            return given
        if self.identities is None:
            raise ConfigurationError(f"active security: client {cid} needs its signing_key")
        return self.identities.signing_key(cid)

    def client(self, client_id: int, update: Any, *, round_id: int = 0, seed: int | None = None,
               signing_key: Ed25519PrivateKey | None = None, model_digest: bytes = bytes(32)) -> Any:
        """A client session. ``model_digest``: hash of the global model this client trained on
        (active mode binds it into every signature); ``signing_key``: the client's Ed25519 key."""
        from secagg.client import SecAggClient

        return SecAggClient(self, client_id, update, round_id=round_id, seed=seed,
                            signing_key=self._signing_key(client_id, signing_key), model_digest=model_digest)

    def server(self, client_ids: Iterable[int], *, round_id: int = 0) -> Any:
        from secagg.server import SecAggServer

        return SecAggServer(self, client_ids, round_id)

    def disclose(self, view: ServerView, threat: ThreatModel) -> Disclosure:
        from secagg.disclosure import disclose

        return disclose(self, view, threat)

    def __repr__(self) -> str:
        return (f"SecAgg(mode={self.mode!r}, threshold={self.threshold}, neighbours={self.neighbours!r}, "
                f"modulus_bits={self.modulus_bits}, security={self.security!r})")

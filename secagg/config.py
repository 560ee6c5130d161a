"""``SecAgg``: the configuration object of Bonawitz et al. 2017 secure aggregation and SecAgg+.

``neighbours="all"`` is the original protocol (every pair of clients masks); an integer ``k``
or ``"auto"`` gives the SecAgg+ sparse graph. ``"auto"`` sizes ``k`` and ``t`` from stated
assumptions (``corrupt_fraction``, ``dropout_fraction``, ``security_bits``) with
:mod:`secagg.parameters`. ``security="active"`` adds signed advertisements, a transcript of the
session in every signature, the commit-reveal graph seed and the consistency-check round,
against a server that deviates from the protocol (see :mod:`secagg.client` for the argument).

Every parameter of a round is derived by each party from its *own* configuration and the
announced roster size, which must lie in ``[min_clients, max_clients]``; a client never takes
a threshold, a neighbour count, a quorum, a roster or a vector length on the server's word.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privagg.encoding.fixed_point import FixedPoint, Rounding
from privagg.errors import ConfigurationError, InsecureParameters
from privagg.identity import Identities, Roster, SigningKey, as_signing_key
from privagg.interface import Aggregator, ServerView
from privagg.ledger import ContributionLedger
from privagg.messages.codec import CheckedIds, IdList
from privagg.threats import Disclosure, ThreatModel
from secagg.graph import check_threshold, default_threshold, effective_neighbours
from secagg.messages import MAX_ROSTER
from secagg.round import ACTIVE_SPARSE_STAGES, ACTIVE_STAGES, STAGES, RoundParameters

__all__ = ["SecAgg", "RoundParameters", "STAGES", "ACTIVE_STAGES", "ACTIVE_SPARSE_STAGES"]

Security = Literal["semi-honest", "active"]


def _integer(name: str, value: Any, *, minimum: int, optional: bool = True) -> int | None:
    """Accept Python and numpy integers (never bool); ``None`` when optional."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _roster(roster: Iterable[int]) -> CheckedIds:
    """The roster as one checked, sorted tuple (as parsed from a message, it already is: O(1))."""
    if type(roster) is CheckedIds:
        return roster
    try:
        return IdList(MAX_ROSTER).check("roster", list(roster))
    except ConfigurationError as exc:
        raise ConfigurationError(f"bad roster: {exc}") from None


def _fraction(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) < 1:
        raise ConfigurationError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SecAgg(Aggregator):
    """Secure aggregation: the server learns only the sum of the clients it names.

    threshold: shares needed to rebuild a client's secrets (default: a strict majority of the
        ``k + 1`` share holders, or what ``"auto"`` finds). neighbours: ``"all"`` (SecAgg),
        ``"auto"`` or an int (SecAgg+).
    corrupt_fraction, dropout_fraction, security_bits, correctness_bits: the assumptions
        ``neighbours="auto"`` sizes the graph for (see :mod:`secagg.parameters`).
    min_clients: the smallest roster a client accepts (default: 2 in semi-honest mode; in
        active mode the whole configured roster, i.e. the server may not leave anyone out;
        set it lower to let the server sample). The largest is the encoding's ``max_clients``.
    dimension: the vector length every round of this configuration has (else each server is
        given it, and each client checks it against its own update).
    modulus_bits, clip, scale, max_clients, rounding: the fixed-point encoding (see
        :class:`privagg.FixedPoint`). security: ``"semi-honest"`` or ``"active"``.
    roster / identities: Ed25519 public keys of the clients (active mode); when neither is
        given, :class:`~privagg.identity.Identities` are generated on demand (simulations only).
    keep_masked_inputs: keep each masked vector in the server view (auditing) or only its size
        (the server then holds one running sum: O(params) memory).
    ledger: what the clients of this configuration already unmasked for
        (:class:`~privagg.ledger.ContributionLedger`): a client answers one unmasking request per
        model digest (per round id without a digest), so a server cannot run a round twice and
        difference the sums. In memory by default; give one with a file for clients that run
        in a new process per round.
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
    min_clients: int | None = None
    dimension: int | None = None
    corrupt_fraction: float | None = None
    dropout_fraction: float | None = None
    security_bits: float = 40.0
    correctness_bits: float = 20.0
    ledger: ContributionLedger = field(default_factory=ContributionLedger, compare=False, repr=False)
    fixed_point: FixedPoint = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed_point", FixedPoint(
            bits=self.modulus_bits, clip=self.clip, scale=self.scale, max_clients=self.max_clients,
            rounding=self.rounding))
        if self.security not in ("semi-honest", "active"):
            raise ConfigurationError(f"security must be 'semi-honest' or 'active', got {self.security!r}")
        if self.neighbours not in ("all", "auto"):
            object.__setattr__(self, "neighbours", _integer("neighbours", self.neighbours, minimum=1,
                                                            optional=False))
        object.__setattr__(self, "threshold", _integer("threshold", self.threshold, minimum=1))
        object.__setattr__(self, "min_clients", _integer("min_clients", self.min_clients, minimum=2))
        object.__setattr__(self, "dimension", _integer("dimension", self.dimension, minimum=1))
        object.__setattr__(self, "corrupt_fraction", _fraction("corrupt_fraction", self.corrupt_fraction))
        object.__setattr__(self, "dropout_fraction", _fraction("dropout_fraction", self.dropout_fraction))
        for name in ("security_bits", "correctness_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 256:
                raise ConfigurationError(f"{name} must be a number in (0, 256], got {value!r}")
        if not isinstance(self.ledger, ContributionLedger):
            raise ConfigurationError("ledger must be a privagg.ledger.ContributionLedger")
        if self.roster is not None and not isinstance(self.roster, Roster):
            raise ConfigurationError("roster must be a privagg.identity.Roster")
        if self.active and self.roster is None and self.identities is None:
            object.__setattr__(self, "identities", Identities())
        if self.min_clients is not None and self.min_clients > self.fixed_point.max_clients:
            raise ConfigurationError(f"min_clients {self.min_clients} exceeds max_clients {self.max_clients}")

    @property
    def mode(self) -> str:  # type: ignore[override]
        return "secagg" if self.neighbours == "all" else "secagg+"

    @property
    def active(self) -> bool:
        return self.security == "active"

    @property
    def stages(self) -> tuple[str, ...]:
        if not self.active:
            return STAGES
        return ACTIVE_STAGES if self.neighbours == "all" else ACTIVE_SPARSE_STAGES

    @property
    def encoding(self) -> FixedPoint:
        return self.fixed_point

    def min_included(self, clients: int) -> int:
        return self.graph_parameters(clients)[1]

    def with_encoding(self, encoding: FixedPoint) -> SecAgg:
        return replace(self, modulus_bits=encoding.bits, clip=encoding.clip, scale=encoding.scale,
                       max_clients=encoding.max_clients, rounding=encoding.rounding)

    # -- what every party derives ----------------------------------------------------------
    def trusted_roster(self) -> Roster | None:
        """The identities this configuration trusts (active mode), or None."""
        if not self.active:
            return None
        if self.roster is not None:
            return self.roster
        assert self.identities is not None
        return self.identities.known()

    def roster_bounds(self) -> tuple[int, int]:
        """The fewest and the most clients a round of this configuration may have."""
        high = self.fixed_point.max_clients
        if self.min_clients is not None:
            return self.min_clients, high
        trusted = self.trusted_roster()
        return (max(2, len(trusted)) if trusted is not None else 2), high

    def graph_parameters(self, n: int) -> tuple[int, int]:
        """``(k, t)`` for a round of ``n`` clients, from this configuration alone."""
        if self.neighbours == "auto":
            from secagg.parameters import find_graph_parameters

            found = find_graph_parameters(
                n, **{name: value for name, value in (("corrupt_fraction", self.corrupt_fraction),
                                                      ("dropout_fraction", self.dropout_fraction))
                      if value is not None},
                security_bits=self.security_bits, correctness_bits=self.correctness_bits, active=self.active)
            k, t = effective_neighbours(n, found.neighbours), found.threshold
        else:
            k = effective_neighbours(n, None if self.neighbours == "all" else int(self.neighbours))
            t = default_threshold(k)
        if self.threshold is not None:
            t = self.threshold
        check_threshold(t, k, active=self.active)
        if self.active and t > k:
            # Active clients go on only with t live neighbours of their own (so that one is honest
            # while fewer than t collude): t = k + 1 could never be met.
            raise InsecureParameters(f"active security needs a threshold of at most k = {k} (got {t})")
        return k, t

    def parameters(self, roster: Iterable[int], dimension: int | None = None) -> RoundParameters:
        """Every parameter of a round over ``roster``, from this configuration alone (no check
        of who is in it: sessions use :meth:`admit`)."""
        ids = _roster(roster)
        n = len(ids)
        k, t = self.graph_parameters(n)
        # Two conflicting survivor sets must never both gather the quorum. Honest clients sign
        # once, colluding ones sign both: 2 * quorum > n + colluders must hold. Two thirds of the
        # roster tolerate fewer than n / 3 colluders (Bonawitz et al.'s active bound).
        quorum = max(t, 2 * n // 3 + 1) if self.active else 0
        dim = dimension if dimension is not None else (self.dimension or 0)
        return RoundParameters(ids, k, t, quorum, int(dim), self.fixed_point.bits, self.active)

    def admit(self, roster: Iterable[int], dimension: int | None = None) -> RoundParameters:
        """The parameters of a round over ``roster``, after checking that this configuration
        takes part in it: the roster size within :meth:`roster_bounds`, every client in the
        configured roster (active), a known vector length. Raises
        :class:`InsecureParameters` or :class:`ConfigurationError` naming what does not fit."""
        ids = _roster(roster)
        n = len(ids)
        low, high = self.roster_bounds()
        if not low <= n <= high:
            raise InsecureParameters(f"a roster of {n} clients is outside this configuration's bounds "
                                     f"[{low}, {high}] (min_clients, max_clients)")
        trusted = self.trusted_roster()
        if trusted is not None:
            unknown = trusted.missing(ids)
            if unknown:
                raise InsecureParameters(f"clients {unknown[:5]} are not in the configured roster")
        dim = dimension if dimension is not None else self.dimension
        if dim is None:
            raise ConfigurationError("secure aggregation needs the vector length: give dimension= "
                                     "to SecAgg or to server()")
        if self.dimension is not None and dim != self.dimension:
            raise ConfigurationError(f"dimension {dim} differs from the configured {self.dimension}")
        return self.parameters(ids, dim)

    def _signing_key(self, cid: int, given: SigningKey | Ed25519PrivateKey | None) -> SigningKey | None:
        if not self.active:
            return None
        key = as_signing_key(given)
        if key is not None:
            return key
        if self.identities is None:
            raise ConfigurationError(f"active security: client {cid} needs its signing_key")
        return self.identities.signing_key(cid)

    def client(self, client_id: int, update: Any, *, round_id: int = 0, seed: int | None = None,
               signing_key: SigningKey | Ed25519PrivateKey | None = None, model_digest: bytes = bytes(32)) -> Any:
        """A client session. ``model_digest``: hash of the global model this client trained on
        (active mode binds it into every signature); ``signing_key``: the client's Ed25519 key."""
        from secagg.client import SecAggClient

        return SecAggClient(self, client_id, update, round_id=round_id, seed=seed,
                            signing_key=self._signing_key(client_id, signing_key), model_digest=model_digest)

    def server(self, client_ids: Iterable[int], *, round_id: int = 0, dimension: int | None = None) -> Any:
        from secagg.server import SecAggServer

        if self.active and self.roster is None and self.identities is not None:
            self.identities.roster(client_ids)  # simulations: identities for this round's clients
        return SecAggServer(self, client_ids, round_id, dimension)

    def disclose(self, view: ServerView, threat: ThreatModel) -> Disclosure:
        from secagg.disclosure import disclose

        return disclose(self, view, threat)

    def __repr__(self) -> str:
        return (f"SecAgg(mode={self.mode!r}, threshold={self.threshold}, neighbours={self.neighbours!r}, "
                f"modulus_bits={self.modulus_bits}, security={self.security!r})")


"""Threat models as values, and what an adversary learns from a server view.

Every aggregation mode answers one question through :meth:`Aggregator.disclose`: given
everything the server observed in a round (its :class:`~privagg.interface.ServerView`) and a
threat model, which plaintext values can that adversary compute? Attacks start from that
answer, so they never special-case a mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from privagg.errors import ConfigurationError

__all__ = ["ThreatModel", "HONEST_BUT_CURIOUS", "OUTSIDER", "colluding", "PartialSum", "Disclosure"]


@dataclass(frozen=True)
class ThreatModel:
    """Who the adversary is.

    ``sees_server_view``: the adversary holds everything the server received (an
    honest-but-curious or colluding server); an outsider sees only the released output.
    ``colluders``: clients whose inputs, keys and secret state the adversary also holds;
    ``known_inputs``: those colluders' (decoded) updates, when the analysis needs them.
    """

    name: str
    sees_server_view: bool = True
    colluders: frozenset[int] = field(default_factory=frozenset)
    known_inputs: Mapping[int, npt.NDArray[np.float64]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.sees_server_view and self.colluders:
            raise ConfigurationError("an outsider threat model cannot have colluding clients")


HONEST_BUT_CURIOUS = ThreatModel("honest-but-curious server")
OUTSIDER = ThreatModel("outsider (released output only)", sees_server_view=False)


def colluding(client_ids: Iterable[int], inputs: Mapping[int, npt.ArrayLike] | None = None) -> ThreatModel:
    """A server that also holds the inputs and secrets of ``client_ids`` (``inputs``: their updates)."""
    ids = frozenset(int(i) for i in client_ids)
    known = None
    if inputs is not None:
        missing = ids - set(inputs)
        if missing:
            raise ConfigurationError(f"inputs missing for colluders {sorted(missing)[:5]}")
        known = {cid: np.asarray(inputs[cid], dtype=np.float64) for cid in ids}
    return ThreatModel(f"server colluding with {len(ids)} client(s)", True, ids, known)


@dataclass(frozen=True)
class PartialSum:
    """The sum of the (decoded) inputs of ``client_ids``, as the adversary can compute it."""

    client_ids: tuple[int, ...]
    total: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Disclosure:
    """What one adversary can compute in plaintext from one round.

    ``individual`` holds single clients' decoded updates it learns; ``partial_sums`` the sums
    of groups it learns (the aggregate, or the aggregate minus the colluders' own inputs);
    ``summary`` says so in a sentence for reports.
    """

    threat: ThreatModel
    individual: Mapping[int, npt.NDArray[np.float64]]
    partial_sums: tuple[PartialSum, ...]
    summary: str
    #: Honest clients whose individual update the adversary can compute with its colluders'
    #: secret state (their shares), which the view alone does not hold: listed, never hidden.
    exposed: tuple[int, ...] = ()

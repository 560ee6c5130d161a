"""The stage names of a secure-aggregation round and the parameters every party derives.

Kept apart from :mod:`secagg.config` so that the sessions (which need both) and the
configuration (which makes sessions) import this module, not each other.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["ADVERTISE", "GRAPH", "SHARE", "MASKED", "CONSISTENCY", "UNMASK", "STAGES", "ACTIVE_STAGES",
           "ACTIVE_SPARSE_STAGES", "RoundParameters"]

ADVERTISE, GRAPH, SHARE, MASKED, CONSISTENCY, UNMASK = (
    "advertise_keys", "graph_seed", "share_keys", "masked_input", "consistency_check", "unmasking")
#: Semi-honest rounds.
STAGES = (ADVERTISE, SHARE, MASKED, UNMASK)
#: Active rounds over the complete graph.
ACTIVE_STAGES = (ADVERTISE, SHARE, MASKED, CONSISTENCY, UNMASK)
#: Active SecAgg+ rounds: the graph seed is fixed by commit-reveal of the clients' randomness.
ACTIVE_SPARSE_STAGES = (ADVERTISE, GRAPH, SHARE, MASKED, CONSISTENCY, UNMASK)


@dataclass(frozen=True)
class RoundParameters:
    """What every party derives from its own configuration and the announced roster size.

    ``neighbours`` (k) and ``threshold`` (t) size the Shamir sharing; ``signatures_needed`` is
    the consistency quorum (active); ``min_live`` how many of a client's neighbours must stay
    live (send shares, then survive) for it to go on: ``t`` in active mode (so that, with fewer
    than ``t`` colluding neighbours, one honest neighbour always survives), ``t - 1`` in
    semi-honest mode (its own share makes ``t``).
    """

    roster: tuple[int, ...]
    neighbours: int
    threshold: int
    signatures_needed: int
    dimension: int
    bits: int
    active: bool

    @property
    def complete(self) -> bool:
        return self.neighbours >= len(self.roster) - 1

    @property
    def sparse_active(self) -> bool:
        return self.active and not self.complete

    @property
    def min_live(self) -> int:
        return self.threshold if self.active else self.threshold - 1

    @property
    def stages(self) -> tuple[str, ...]:
        if not self.active:
            return STAGES
        return ACTIVE_STAGES if self.complete else ACTIVE_SPARSE_STAGES

    def x_coordinate(self, cid: int) -> int:
        """The Shamir evaluation point of ``cid``: its 1-based position in the sorted roster
        (a bisection: no per-round index of the whole roster)."""
        i = bisect.bisect_left(self.roster, cid)
        if i == len(self.roster) or self.roster[i] != cid:
            raise KeyError(cid)
        return i + 1

    def __contains__(self, cid: object) -> bool:
        i = bisect.bisect_left(self.roster, cid)  # type: ignore[arg-type]
        return i < len(self.roster) and self.roster[i] == cid

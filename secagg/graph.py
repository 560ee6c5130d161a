"""Who masks with whom: the complete graph (SecAgg) or a sparse Harary graph (SecAgg+).

For SecAgg+ every party derives the same graph from the public roster and a seed the server
announces: clients are placed on a ring in the order of ``SHA-256(seed || id)`` (a random
permutation no party can steer once the seed is fixed, and independent of any library's
random-number stream), and each is linked to its ``k // 2`` nearest ring neighbours on each
side; for odd ``k`` also to the opposite client (a Harary graph, which needs an even roster;
with an odd roster odd ``k`` is rounded up). Every client then has exactly ``k`` neighbours.

Defaults (Bell et al. 2020 take ``k = O(log n)``):

* ``k = min(n - 1, 2 * ceil(log2 n))``, e.g. 14 neighbours for 100 clients;
* ``threshold = floor((k + 1) / 2) + 1``: a strict majority of each neighbourhood (the ``k``
  neighbours and the client itself hold the ``k + 1`` shares of its secrets). A majority is
  what the active-security consistency check needs, and it tolerates almost half of a
  neighbourhood dropping out.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence

from privagg.errors import ConfigurationError, InsecureParameters

__all__ = ["default_neighbours", "default_threshold", "effective_neighbours", "neighbour_graph",
           "check_threshold"]


def default_neighbours(n: int) -> int:
    return min(n - 1, 2 * math.ceil(math.log2(max(n, 2))))


def effective_neighbours(n: int, k: int | None) -> int:
    """The neighbour count actually used: ``n - 1`` for the complete graph, else ``k`` adjusted."""
    if k is None or k >= n - 1:
        return n - 1
    if k < 1:
        raise ConfigurationError(f"neighbours must be at least 1, got {k}")
    if k % 2 == 1 and n % 2 == 1:
        return k + 1  # no k-regular graph with k and n both odd
    return k


def default_threshold(k: int) -> int:
    return (k + 1) // 2 + 1 if k >= 2 else k + 1


def check_threshold(threshold: int, k: int, *, active: bool) -> None:
    """Refuse thresholds that cannot work or that give up the protocol's guarantee."""
    shares = k + 1
    if not 1 <= threshold <= shares:
        raise ConfigurationError(f"threshold {threshold} must be between 1 and {shares} (the shares per client)")
    if threshold < 2 and shares > 1:
        raise InsecureParameters("threshold 1 lets any single share holder reveal a secret; use at least 2")
    if active and 2 * threshold <= shares:
        raise InsecureParameters(
            f"active security needs a threshold above half of the {shares} shares per client "
            f"(got {threshold}): two conflicting survivor sets could otherwise both gather enough signatures"
        )


def _ring_order(roster: Sequence[int], seed: bytes) -> list[int]:
    return sorted(roster, key=lambda cid: hashlib.sha256(seed + struct.pack("<Q", cid)).digest())


def neighbour_graph(roster: Sequence[int], k: int, seed: bytes) -> dict[int, frozenset[int]]:
    """Each client's neighbours (itself excluded) in the graph of degree ``k`` over ``roster``."""
    n = len(roster)
    if k >= n - 1:
        everyone = frozenset(roster)
        return {cid: everyone - {cid} for cid in roster}
    order = _ring_order(roster, seed)
    offsets = list(range(1, k // 2 + 1))
    graph: dict[int, set[int]] = {cid: set() for cid in roster}
    for i, cid in enumerate(order):
        for off in offsets:
            for j in (i + off, i - off):
                graph[cid].add(order[j % n])
        if k % 2 == 1:
            graph[cid].add(order[(i + n // 2) % n])
    return {cid: frozenset(peers) for cid, peers in graph.items()}


class NeighbourGraph:
    """One round's graph (interim implementation over :func:`neighbour_graph`)."""

    def __init__(self, roster: Sequence[int], k: int, seed: bytes) -> None:
        self._roster = tuple(roster)
        self._k = k
        self._seed = seed
        self._full: dict[int, frozenset[int]] | None = None

    def full(self) -> dict[int, frozenset[int]]:
        if self._full is None:
            self._full = neighbour_graph(self._roster, self._k, self._seed)
        return self._full

    def neighbours(self, cid: int) -> frozenset[int]:
        return self.full()[cid]

    def are_neighbours(self, a: int, b: int) -> bool:
        return b in self.full()[a]

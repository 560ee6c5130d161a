"""Who masks with whom: the complete graph (SecAgg) or a sparse Harary graph (SecAgg+).

For SecAgg+ every party derives the same graph from the public roster and a seed the server
announces. The roster (the sorted tuple of client ids) is placed on a ring by a keyed
pseudorandom permutation ``pi`` of the roster indices ``0 .. n-1``: the client at roster index
``i`` sits at ring position ``pi(i)``, and is linked to the ``k // 2`` nearest positions on each
side, and for odd ``k`` also to the opposite position ``pi(i) + n // 2`` (a Harary graph, which
needs an even roster; with an odd roster odd ``k`` is rounded up). Every client then has exactly
``k`` neighbours, and the graph is symmetric.

Why a permutation rather than sorting the roster by a hash: with a sort, each client has to
hash and sort the whole roster to find its own ``k`` neighbours (``O(n log n)`` per client, and
``O(n^2 log n)`` across a round). With a permutation that can be evaluated and inverted at a
single point, a client computes its own position ``pi(i)`` (``i`` found by bisection in the
sorted roster) and the ``k`` inverses ``pi^-1(pi(i) +- j)``: ``O(k log n)``, independent of the
roster size in practice (see :class:`NeighbourGraph`). The server, which needs the whole graph,
evaluates the permutation over every index at once (:meth:`NeighbourGraph.full`).

``pi`` is a balanced Feistel network over the smallest even number of bits covering ``n``
(:class:`RingPermutation`), with AES-256 round functions under a key derived from the seed,
and cycle walking to stay inside ``0 .. n-1``. It is a public function of the seed: it hides
nothing. What matters is that no party can steer where a given client lands, so the seed must
be unpredictable to any party who could benefit from choosing the graph, at the time that
party's choices are fixed: clients must not know it before the roster is final (else a
coalition could pick ids that surround a victim), and whoever draws it must not be able to
retry until it likes the outcome. :mod:`secagg.server` draws it with :func:`secrets.token_bytes`
after the roster is fixed and announces it to everyone; this protects against clients, not
against a server that picks its own seed (a seed from a joint coin toss or a public beacon
would be needed for that).

Defaults (Bell et al. 2020 take ``k = O(log n)``):

* ``k = min(n - 1, 2 * ceil(log2 n))``, e.g. 14 neighbours for 100 clients;
* ``threshold = floor((k + 1) / 2) + 1``: a strict majority of each neighbourhood (the ``k``
  neighbours and the client itself hold the ``k + 1`` shares of its secrets). A majority is
  what the active-security consistency check needs, and it tolerates almost half of a
  neighbourhood dropping out.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import math
import struct
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privagg.errors import ConfigurationError, InsecureParameters

__all__ = ["default_neighbours", "default_threshold", "effective_neighbours", "neighbour_graph",
           "check_threshold", "NeighbourGraph", "RingPermutation", "SEED_BYTES"]

SEED_BYTES = 32

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


# ---------------------------------------------------------------------------------------------
# The ring permutation
# ---------------------------------------------------------------------------------------------

# Rounds of the Feistel network. Four rounds already make a pseudorandom permutation (Luby and
# Rackoff, SIAM J. Comput. 1988), but only up to about 2^(h/2) points for h-bit halves, and here
# the halves are 2 to 10 bits wide: the domain is tiny and every point of it matters. Patarin
# ("Security of Random Feistel Schemes with 5 or More Rounds", CRYPTO 2004) raises the bound to
# about 2^h points with 5 rounds (chosen plaintexts) or 6 (chosen ciphertexts), and Hoang and
# Rogaway ("On Generalized Feistel Networks", CRYPTO 2010) show that further rounds push it
# towards the size of the domain, which is what a small domain needs (Morris, Rogaway and
# Stegers, "How to Encipher Messages on a Small Domain", CRYPTO 2009, on full security). The
# standard 8- and 10-round designs (FF3, FF1) have practical attacks on small domains (Bellare,
# Hoang and Tessaro, CCS 2016; Durak and Vaudenay, CRYPTO 2017; Hoang, Tessaro and Trieu, "The
# Curse of Small Domains", CRYPTO 2018), after which NIST SP 800-38G Rev. 1 asks for domains of
# at least a million points. Our key is public once the seed is announced, so what we need is
# not secrecy but that, over a random seed (AES under a random key standing in for random round
# functions), the ring positions of any set of clients are distributed as under a uniform
# permutation. We take a conservative 24 rounds, three times the round counts those attacks
# reach; the tests see the non-uniformity of 3 rounds at 5 to 9 clients. The cost is only time,
# and batching keeps a client's neighbourhood near a millisecond at k = 538.
_ROUNDS = 24

# Domain label of the key derivation (changing the construction must change it).
_KEY_LABEL = b"privagg/secagg/graph/ring-permutation/feistel-aes256/v1"

# Below this many values still walking, the last few cycle-walking steps run one value at a
# time: a single AES block costs less than the fixed overhead of a numpy round.
_SCALAR_TAIL = 4

_BLOCK = struct.Struct("<I12x")


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
        got = f"{len(seed)} bytes" if isinstance(seed, (bytes, bytearray)) else type(seed).__name__
        raise ConfigurationError(f"the graph seed must be {SEED_BYTES} bytes, got {got}")
    return bytes(seed)


class RingPermutation:
    """A keyed pseudorandom permutation ``pi`` of ``range(n)`` and its inverse, ``2 <= n <= 2**32``.

    A balanced Feistel network on ``2 * h`` bits, ``h = max(2, ceil(log2(n) / 2))`` (the smallest
    even number of bits covering ``n``, at least 2 bits per half), ``x = (L, R)`` with ``L`` the
    high half; round ``j`` maps ``(L, R)`` to ``(R, L xor F_j(R))``. The round function
    ``F_j(v)`` is the low ``h`` bits of ``AES-256_K(v + 2^16 j)`` (``v < 2^16``; block and output
    read as four little-endian 32-bit words, the last three words of the block zero), under
    ``K = HMAC-SHA256(seed, label || n || rounds)`` (``n`` as 8 little-endian bytes, ``rounds`` as
    one byte: each roster size has its own key). Values at or above ``n`` are mapped again until
    they land in ``range(n)`` (cycle walking: Black and Rogaway, "Ciphers with Arbitrary Finite
    Domains", CT-RSA 2002), which gives a permutation of ``range(n)``; a point needs
    ``2^(2h) / n`` evaluations of the network on average, fewer than 4 once ``n > 4``.

    :meth:`forward` / :meth:`inverse` evaluate one point, :meth:`forward_many` /
    :meth:`inverse_many` a batch (one AES-ECB call per round over the whole batch), and
    :meth:`table` the whole permutation at once (all round functions tabulated: ``O(n)``).
    Instances are immutable and safe to share between threads.
    """

    __slots__ = ("n", "bits", "half", "rounds", "_mask", "_key")

    def __init__(self, seed: bytes, n: int) -> None:
        seed = _check_seed(seed)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= 2**32:
            raise ConfigurationError(f"the ring permutation needs 2 <= n <= 2^32 points, got {n!r}")
        self.n = n = int(n)
        bits = (n - 1).bit_length()
        self.bits = max(4, bits + (bits & 1))
        self.half = self.bits // 2
        self.rounds = _ROUNDS
        self._mask = (1 << self.half) - 1
        self._key = hmac.new(seed, _KEY_LABEL + struct.pack("<QB", n, _ROUNDS), hashlib.sha256).digest()

    def _encryptor(self):
        # A fresh context per call (a few microseconds): ECB keeps no state between blocks, but a
        # context must not be used by two threads at once.
        return Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()

    # -- one point ------------------------------------------------------------------------------
    def _walk_one(self, enc, x: int, inverse: bool) -> int:
        """Cycle-walk from ``x`` (applies the network at least once)."""
        h, mask, n, pack, update = self.half, self._mask, self.n, _BLOCK.pack, enc.update
        order = range(self.rounds - 1, -1, -1) if inverse else range(self.rounds)
        while True:
            left, right = x >> h, x & mask
            if inverse:
                for j in order:
                    f = int.from_bytes(update(pack(left | (j << 16)))[:4], "little") & mask
                    left, right = right ^ f, left
            else:
                for j in order:
                    f = int.from_bytes(update(pack(right | (j << 16)))[:4], "little") & mask
                    left, right = right, left ^ f
            x = (left << h) | right
            if x < n:
                return x

    def _check_point(self, x: int) -> int:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= x < self.n:
            raise ConfigurationError(f"{x!r} is not a point of range({self.n})")
        return int(x)

    def forward(self, x: int) -> int:
        """``pi(x)``."""
        return self._walk_one(self._encryptor(), self._check_point(x), False)

    def inverse(self, y: int) -> int:
        """``pi^-1(y)``."""
        return self._walk_one(self._encryptor(), self._check_point(y), True)

    # -- a batch --------------------------------------------------------------------------------
    def _network_many(self, enc, x: np.ndarray, inverse: bool) -> np.ndarray:
        """One pass of the Feistel network over ``x`` (uint32): per round one AES-ECB call over
        the whole batch and three in-place numpy operations."""
        h, mask, m = self.half, self._mask, len(x)
        words = np.zeros((m, 4), dtype="<u4")  # one AES block per value: (v + 2^16 j, 0, 0, 0)
        column, source = words[:, 0], memoryview(words).cast("B")
        sink = bytearray(16 * m + 15)  # update_into wants a block's worth of slack
        f = np.frombuffer(sink, dtype="<u4", count=4 * m)[::4]  # low 32 bits of each output
        left, right = x >> h, x & mask
        for j in (range(self.rounds - 1, -1, -1) if inverse else range(self.rounds)):
            np.bitwise_or(left if inverse else right, j << 16, out=column)
            enc.update_into(source, sink)
            if inverse:  # (L, R) <- (R xor F(L), L)
                right ^= f
                right &= mask
            else:  # (L, R) <- (R, L xor F(R))
                left ^= f
                left &= mask
            left, right = right, left
        return (left << h) | right

    def _walk_many(self, values, inverse: bool) -> np.ndarray:
        points = np.array(values, dtype=np.int64).reshape(-1)
        if points.size and (int(points.min()) < 0 or int(points.max()) >= self.n):
            raise ConfigurationError(f"values outside range({self.n})")
        out = points.astype("<u4")
        enc = self._encryptor()
        todo = np.arange(out.size)
        current = out
        while todo.size > _SCALAR_TAIL:
            current = self._network_many(enc, current, inverse)
            out[todo] = current
            outside = current >= self.n
            todo, current = todo[outside], current[outside]
        for j in todo.tolist():  # out[j] holds the last point reached, or the input itself
            out[j] = self._walk_one(enc, int(out[j]), inverse)
        return out.astype(np.int64)

    def forward_many(self, xs) -> np.ndarray:
        """``pi`` of every value of ``xs`` (an int64 array)."""
        return self._walk_many(xs, False)

    def inverse_many(self, ys) -> np.ndarray:
        """``pi^-1`` of every value of ``ys`` (an int64 array)."""
        return self._walk_many(ys, True)

    # -- the whole permutation ------------------------------------------------------------------
    def table(self) -> np.ndarray:
        """``[pi(0), ..., pi(n - 1)]``: every round function tabulated (``rounds * 2^h`` AES
        blocks in one call), the network run over the whole ``2^(2h)``-point domain with table
        look-ups, and cycle walking by following that table."""
        h, mask = self.half, self._mask
        words = np.zeros((self.rounds << h, 4), dtype="<u4")
        words[:, 0] = ((np.arange(self.rounds, dtype=np.uint32)[:, None] << np.uint32(16))
                       | np.arange(1 << h, dtype=np.uint32)[None, :]).reshape(-1)
        out = np.frombuffer(self._encryptor().update(memoryview(words).cast("B")), dtype="<u4")[::4]
        rounds = (out & mask).astype(np.int64).reshape(self.rounds, 1 << h)
        x = np.arange(1 << self.bits, dtype=np.int64)
        left, right = x >> h, x & mask
        for f in rounds:
            left, right = right, left ^ f[right]
        network = (left << h) | right
        pi = network[: self.n].copy()
        walking = np.flatnonzero(pi >= self.n)
        while walking.size:
            pi[walking] = network[pi[walking]]
            walking = walking[pi[walking] >= self.n]
        return pi


# ---------------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------------

class NeighbourGraph:
    """One round's neighbour graph over ``roster`` with degree ``k``, derived from ``seed``.

    ``roster`` must be the sorted tuple of distinct client ids (what the protocol messages carry):
    a client's roster index is found by bisection, so constructing the graph and asking for one
    client's neighbours never reads the whole roster. Sortedness is the caller's promise, checked
    only by :meth:`full` (which reads everything anyway). ``k`` is adjusted by
    :func:`effective_neighbours` (``k >= n - 1`` is the complete graph, odd ``k`` with odd ``n``
    is rounded up), so every client has exactly :attr:`k` neighbours.

    * construction: ``O(k)`` (the ring offsets) and one HMAC;
    * :meth:`neighbours`: ``O(k log n)``: one forward and ``k`` inverse evaluations of the ring
      permutation (batched), a bisection, ``k`` roster look-ups;
    * :meth:`are_neighbours`: ``O(log n)``: two bisections, two forward evaluations;
    * :meth:`full`: the whole graph, ``O(n k)``, for the server.
    """

    __slots__ = ("roster", "n", "k", "seed", "_perm", "_offsets")

    def __init__(self, roster: Sequence[int], k: int, seed: bytes) -> None:
        self.seed = _check_seed(seed)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ConfigurationError(f"neighbours must be an integer, got {k!r}")
        self.roster = roster
        self.n = n = len(roster)
        k = int(k)
        if k < 1 and not (n <= 1 and k == 0):
            raise ConfigurationError(f"neighbours must be at least 1, got {k}")
        self.k = max(effective_neighbours(n, k), 0)
        self._perm: RingPermutation | None = None
        self._offsets: np.ndarray | None = None
        if not self.complete:
            self._perm = RingPermutation(self.seed, n)
            half = np.arange(1, self.k // 2 + 1, dtype=np.int64)
            parts = [half, -half] + ([np.array([n // 2], dtype=np.int64)] if self.k % 2 else [])
            self._offsets = np.concatenate(parts)

    @property
    def complete(self) -> bool:
        """Whether this is the complete graph (every client masks with every other)."""
        return self.k >= self.n - 1

    @property
    def permutation(self) -> RingPermutation | None:
        """The ring permutation (``None`` for the complete graph, which has no ring)."""
        return self._perm

    def index(self, cid: int) -> int:
        """``cid``'s index in the sorted roster (bisection)."""
        i = bisect.bisect_left(self.roster, cid)
        if i == self.n or self.roster[i] != cid:
            raise ConfigurationError(f"client {cid} is not in the roster")
        return i

    def position(self, cid: int) -> int:
        """``cid``'s position on the ring, ``pi(index(cid))`` (its roster index in the complete graph)."""
        i = self.index(cid)
        return i if self._perm is None else self._perm.forward(i)

    def neighbours(self, cid: int) -> frozenset[int]:
        """The ``k`` neighbours of ``cid`` (itself excluded)."""
        i = self.index(cid)
        if self._perm is None:
            return frozenset(self.roster[j] for j in range(self.n) if j != i)
        assert self._offsets is not None
        positions = (self._perm.forward(i) + self._offsets) % self.n
        return frozenset(map(self.roster.__getitem__, self._perm.inverse_many(positions).tolist()))

    def are_neighbours(self, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` mask with each other (a client is not its own neighbour)."""
        i, j = self.index(a), self.index(b)
        if i == j:
            return False
        if self._perm is None:
            return True
        d = (self._perm.forward(j) - self._perm.forward(i)) % self.n
        return min(d, self.n - d) <= self.k // 2 or (self.k % 2 == 1 and d == self.n // 2)

    def full(self) -> dict[int, frozenset[int]]:
        """Every client's neighbours, keyed in roster order (``O(n k)``, the server's view)."""
        roster, n, k = self.roster, self.n, self.k
        if self._perm is None:
            everyone = frozenset(roster)
            return {cid: everyone - {cid} for cid in roster}
        ids = np.asarray(roster, dtype=np.uint64)
        if ids.shape != (n,) or not bool(np.all(ids[1:] > ids[:-1])):
            raise ConfigurationError("the roster must be a strictly increasing sequence of client ids")
        position = self._perm.table()
        at = np.empty(n, dtype=np.int64)
        at[position] = np.arange(n)
        # The ring as a list of the roster's own id objects, padded by k // 2 on each side: a
        # neighbourhood is two slices of it (plus the opposite client for odd k), so building
        # it allocates no int objects and runs no Python code per neighbour.
        ring = list(map(roster.__getitem__, at.tolist()))
        h = k // 2
        padded = ring[n - h:] + ring + ring[:h]
        opposite = ring[n // 2:] + ring[:n // 2] if k % 2 else None
        rings = []
        for p in range(n):
            peers = padded[p:p + h]
            peers += padded[p + h + 1:p + 2 * h + 1]
            if opposite is not None:
                peers.append(opposite[p])
            rings.append(frozenset(peers))
        return {cid: rings[p] for cid, p in zip(roster, position.tolist())}


def neighbour_graph(roster: Sequence[int], k: int, seed: bytes) -> dict[int, frozenset[int]]:
    """Each client's neighbours (itself excluded) in the graph of degree ``k`` over the sorted
    ``roster``: ``NeighbourGraph(roster, k, seed).full()``. A client needing only its own
    neighbours should ask ``NeighbourGraph(roster, k, seed).neighbours(cid)`` instead."""
    return NeighbourGraph(roster, k, seed).full()

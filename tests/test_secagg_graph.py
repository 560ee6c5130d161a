"""The SecAgg+ neighbour graph: the ring permutation (a small-domain Feistel PRP with cycle
walking) and the Harary graph built on it, one client's neighbourhood at a time."""

import hashlib
import hmac
import math
import struct
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from privagg import ConfigurationError
from secagg.graph import NeighbourGraph, RingPermutation, effective_neighbours, neighbour_graph

seeds = st.binary(min_size=32, max_size=32)


def seed_number(i: int) -> bytes:
    return hashlib.sha256(b"test seed %d" % i).digest()


@st.composite
def rosters(draw, min_size=2, max_size=300):
    n = draw(st.integers(min_size, max_size))
    start = draw(st.integers(0, 2**40))
    gaps = draw(st.lists(st.integers(1, 2**20), min_size=n - 1, max_size=n - 1))
    return tuple(np.cumsum([start, *gaps]).tolist())


class CountingRoster(Sequence):
    """A sorted roster ``first + step * i`` of any size, computed on demand, counting reads."""

    def __init__(self, n: int, first: int = 11, step: int = 7) -> None:
        self.n, self.first, self.step, self.reads = n, first, step, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice) or not -self.n <= i < self.n:
            raise IndexError(i)
        self.reads += 1
        return self.first + self.step * (i % self.n)

    def __iter__(self):
        raise AssertionError("the whole roster was read")


# -- the permutation ------------------------------------------------------------------------------

@given(st.integers(2, 300), seeds, st.data())
def test_the_ring_permutation_is_a_permutation_and_its_inverse_inverts_it(n, seed, data):
    perm = RingPermutation(seed, n)
    table = perm.table()
    assert sorted(table.tolist()) == list(range(n))
    assert perm.forward_many(np.arange(n)).tolist() == table.tolist()
    assert perm.inverse_many(table).tolist() == list(range(n))
    for x in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)):
        assert perm.forward(x) == table[x]
        assert perm.inverse(perm.forward(x)) == x
        assert perm.forward(perm.inverse(x)) == x


@pytest.mark.parametrize("n, bits", [(2, 4), (16, 4), (17, 6), (64, 6), (65, 8), (1000, 10), (10_000, 14),
                                     (10**6, 20), (2**20, 20), (2**20 + 1, 22)])
def test_the_network_is_the_smallest_even_width_covering_the_roster(n, bits):
    perm = RingPermutation(bytes(32), n)
    assert perm.bits == bits and perm.half == bits // 2 and perm.rounds >= 4


@pytest.mark.parametrize("n", [10**6, 2**20, 2**20 - 1, 3 * 2**17 + 5])
def test_large_rosters_round_trip_a_batch_and_single_points(n):
    perm = RingPermutation(seed_number(n), n)
    xs = np.random.default_rng(n).integers(0, n, 600)
    ys = perm.forward_many(xs)
    assert ys.min() >= 0 and ys.max() < n
    assert len(set(ys.tolist())) == len(set(xs.tolist()))
    assert perm.inverse_many(ys).tolist() == xs.tolist()
    assert [perm.forward(int(x)) for x in xs[:20]] == ys[:20].tolist()
    assert [perm.inverse(int(y)) for y in ys[:20]] == xs[:20].tolist()


def _reference_permutation(seed: bytes, n: int) -> list[int]:
    """The construction as documented, written again one point at a time."""
    bits = 4
    while 1 << bits < n:
        bits += 2
    h, rounds = bits // 2, 24
    key = hmac.new(seed, b"privagg/secagg/graph/ring-permutation/feistel-aes256/v1" + struct.pack("<QB", n, rounds),
                   hashlib.sha256).digest()
    aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def f(j, v):
        return struct.unpack("<4I", aes.update(struct.pack("<4I", v + (j << 16), 0, 0, 0)))[0] % (1 << h)

    def network(x):
        left, right = divmod(x, 1 << h)
        for j in range(rounds):
            left, right = right, left ^ f(j, right)
        return left * (1 << h) + right

    out = []
    for x in range(n):
        y = network(x)
        while y >= n:
            y = network(y)
        out.append(y)
    return out


@pytest.mark.parametrize("n", [2, 3, 15, 16, 17, 100, 1000])
def test_the_permutation_is_the_documented_construction(n):
    seed = seed_number(1000 + n)
    assert RingPermutation(seed, n).table().tolist() == _reference_permutation(seed, n)


# -- the graph ------------------------------------------------------------------------------------

@given(rosters(), st.integers(1, 310), seeds, st.data())
def test_the_graph_is_regular_symmetric_and_the_same_one_client_at_a_time(roster, k, seed, data):
    n = len(roster)
    graph = NeighbourGraph(roster, k, seed)
    full = graph.full()
    degree = effective_neighbours(n, k)
    assert graph.k == degree
    assert list(full) == list(roster)
    for cid, peers in full.items():
        assert cid not in peers and len(peers) == degree
        assert peers <= set(roster)
        assert all(cid in full[p] for p in peers)
    assert neighbour_graph(roster, k, seed) == full
    assert NeighbourGraph(list(roster), k, bytearray(seed)).full() == full  # deterministic
    clients = data.draw(st.lists(st.sampled_from(roster), min_size=1, max_size=6))
    for cid in clients:
        assert graph.neighbours(cid) == full[cid]
        assert NeighbourGraph(roster, k, seed).neighbours(cid) == full[cid]
        for other in data.draw(st.lists(st.sampled_from(roster), min_size=1, max_size=6)):
            assert graph.are_neighbours(cid, other) == (other in full[cid])
            assert graph.are_neighbours(other, cid) == (other in full[cid])


@given(st.integers(5, 120), st.integers(1, 40), seeds)
def test_neighbours_are_the_nearest_on_the_ring_and_the_opposite_client(n, k, seed):
    roster = tuple(range(3, 3 + 5 * n, 5))
    graph = NeighbourGraph(roster, k, seed)
    if graph.complete:
        return
    position = {cid: graph.permutation.forward(i) for i, cid in enumerate(roster)}
    assert sorted(position.values()) == list(range(n))
    assert position == {cid: graph.position(cid) for cid in roster}
    full = graph.full()
    for a in roster:
        expected = set()
        for b in roster:
            d = (position[b] - position[a]) % n
            if 1 <= min(d, n - d) <= graph.k // 2 or (graph.k % 2 and d == n // 2):
                expected.add(b)
        assert full[a] == expected


@given(st.integers(1, 40), st.integers(0, 60), seeds)
def test_k_at_least_n_minus_1_is_the_complete_graph(n, extra, seed):
    roster = tuple(range(10, 10 + n))
    k = max(n - 1 + extra, 1) if n > 1 else extra
    graph = NeighbourGraph(roster, k, seed)
    assert graph.complete and graph.k == n - 1 and graph.permutation is None
    everyone = set(roster)
    assert graph.full() == {cid: everyone - {cid} for cid in roster}
    assert all(graph.neighbours(cid) == everyone - {cid} for cid in roster)
    assert all(graph.are_neighbours(a, b) == (a != b) for a in roster[:5] for b in roster[:5])


def test_odd_k_with_an_odd_roster_is_rounded_up():
    graph = NeighbourGraph(tuple(range(11)), 5, seed_number(0))
    assert graph.k == 6
    assert all(len(p) == 6 for p in graph.full().values())
    assert NeighbourGraph(tuple(range(11)), 9, seed_number(0)).complete  # 9 + 1 = n - 1


@pytest.mark.parametrize("n, k", [(10, 2), (50, 6), (51, 5), (300, 12)])
def test_different_seeds_give_different_graphs(n, k):
    roster = tuple(range(n))
    graphs = {tuple(sorted((c, tuple(sorted(p))) for c, p in neighbour_graph(roster, k, seed_number(i)).items()))
              for i in range(20)}
    assert len(graphs) == 20
    firsts = {NeighbourGraph(roster, k, seed_number(i)).neighbours(0) for i in range(20)}
    assert len(firsts) > 10


def _chi_square(counts, expected):
    return sum((c - expected) ** 2 / expected for c in counts)


@pytest.mark.parametrize("n, k", [(12, 4), (17, 3), (9, 2), (40, 7)])
def test_the_neighbourhood_of_a_client_is_close_to_uniform_over_seeds(n, k):
    """Over many seeds every other client is a neighbour of client 0 equally often, and the
    neighbourhoods themselves (as sets) are spread evenly over all the possible ones."""
    roster, trials = tuple(range(n)), 3000
    degree = effective_neighbours(n, k)
    hoods = Counter(NeighbourGraph(roster, k, seed_number(i)).neighbours(0) for i in range(trials))
    hits = Counter(c for hood, times in hoods.items() for c in hood for _ in range(times))
    counts = [hits[c] for c in roster[1:]]
    # n - 2 degrees of freedom: a chi-square above 4 (n - 2) + 30 has p far below 1e-6.
    assert _chi_square(counts, trials * degree / (n - 1)) < 4 * (n - 2) + 30, counts
    if k == 2:  # neighbourhood {left, right}: every unordered pair of the other clients
        pairs = math.comb(n - 1, 2)
        assert len(hoods) == pairs
        per_pair = [hoods.get(frozenset(p), 0) for p in _pairs(roster[1:])]
        assert _chi_square(per_pair, trials / pairs) < 4 * pairs + 30, per_pair


def _pairs(items):
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1:]]


@pytest.mark.parametrize("n", [5, 6, 17, 65])
def test_positions_and_pairs_of_positions_are_close_to_uniform_over_seeds(n):
    """``pi(0)`` is uniform on the ring, and ``(pi(0), pi(1))`` on the ordered pairs (cycle
    walking included: 17 and 65 points sit in domains of 64 and 256)."""
    trials = 4000
    tables = [RingPermutation(seed_number(i), n).table() for i in range(trials)]
    first = Counter(int(t[0]) for t in tables)
    assert _chi_square([first[p] for p in range(n)], trials / n) < 4 * n + 30
    if n <= 17:
        cells = n * (n - 1)
        joint = Counter((int(t[0]), int(t[1])) for t in tables)
        counts = [joint[(a, b)] for a in range(n) for b in range(n) if a != b]
        assert _chi_square(counts, trials / cells) < 2 * cells + 60


def test_bad_inputs_are_configuration_errors():
    roster, seed = tuple(range(20)), bytes(32)
    for k in (0, -1, True, 2.0, None):
        with pytest.raises(ConfigurationError):
            NeighbourGraph(roster, k, seed)
        with pytest.raises(ConfigurationError):
            neighbour_graph(roster, k, seed)
    for bad_seed in (b"", bytes(31), bytes(33), "x" * 32, None, 5):
        with pytest.raises(ConfigurationError):
            NeighbourGraph(roster, 4, bad_seed)
        with pytest.raises(ConfigurationError):
            RingPermutation(bad_seed, 20)
    for n in (0, 1, -3, 2**32 + 1, 2.0):
        with pytest.raises(ConfigurationError):
            RingPermutation(seed, n)
    perm = RingPermutation(seed, 20)
    for x in (-1, 20, 1.5):
        with pytest.raises(ConfigurationError):
            perm.forward(x)
        with pytest.raises(ConfigurationError):
            perm.inverse(x)
    with pytest.raises(ConfigurationError):
        perm.inverse_many([3, 20])
    graph = NeighbourGraph(roster, 4, seed)
    for stranger in (-1, 20, 10**9):
        with pytest.raises(ConfigurationError):
            graph.neighbours(stranger)
        with pytest.raises(ConfigurationError):
            graph.are_neighbours(0, stranger)
    with pytest.raises(ConfigurationError):  # full() reads the whole roster, so it checks the order
        NeighbourGraph((1, 5, 3, 7, 9, 11), 2, seed).full()
    with pytest.raises(ConfigurationError):
        NeighbourGraph((1, 3, 3, 7, 9, 11), 2, seed).full()
    assert NeighbourGraph((42,), 0, seed).full() == {42: frozenset()}  # a lone client


@pytest.mark.parametrize("n", [1000, 10**6, 2**20])
@pytest.mark.parametrize("k", [12, 538])
def test_one_clients_neighbours_read_only_k_and_a_bisection_of_the_roster(n, k):
    roster = CountingRoster(n)
    graph = NeighbourGraph(roster, k, seed_number(n))
    assert roster.reads == 0
    cid = roster[n // 3]
    roster.reads = 0
    peers = graph.neighbours(cid)
    assert len(peers) == k and cid not in peers
    bisection = math.ceil(math.log2(n)) + 2
    assert roster.reads <= k + bisection
    roster.reads = 0
    assert all(graph.are_neighbours(cid, p) and graph.are_neighbours(p, cid) for p in list(peers)[:10])
    assert roster.reads <= 10 * 2 * 2 * bisection
    others = [roster[i] for i in (0, n - 1, n // 2 + 7)]
    for other in others:  # symmetry, checked from the other side
        assert (cid in graph.neighbours(other)) == (other in peers) == graph.are_neighbours(cid, other)


def test_per_client_cost_does_not_grow_with_the_roster():
    """Prints the cost of one client's neighbourhood as the roster grows (no wall-time assert:
    shared machines are noisy); checks that every result has the right size."""
    seed = seed_number(7)
    print()
    for k in (12, 538):
        for n in (100, 1000, 10_000, 100_000, 10**6):
            roster = range(7, 7 + 3 * n, 3)
            cids = [roster[i] for i in np.random.default_rng(n).integers(0, n, 50)]
            start = time.perf_counter()
            sizes = {len(NeighbourGraph(roster, k, seed).neighbours(c)) for c in cids}
            per_call = (time.perf_counter() - start) / len(cids)
            assert sizes == {effective_neighbours(n, k)}
            print(f"neighbours(): n={n:>9,} k={k:>3}: {per_call * 1e3:7.3f} ms")
    roster = tuple(range(10_000))
    start = time.perf_counter()
    full = NeighbourGraph(roster, 538, seed).full()
    print(f"full(): n=10,000 k=538: {time.perf_counter() - start:.3f} s")
    assert len(full) == 10_000

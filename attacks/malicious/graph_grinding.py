"""Graph-seed grinding (SecAgg+): a server that picks the graph puts its accomplices next to its
target. With ``t`` colluding neighbours the colluders hold ``t`` shares of both of the target's
secrets, and the target's masked input falls open.

* Semi-honest SecAgg+: the server announces the graph seed. :func:`grind_seed` tries seeds
  offline until the target has the neighbours the server wants, and :func:`chosen_seed` runs
  the round on it (clients cannot tell a ground seed from a random one).
* Active SecAgg+: the seed is ``H(H0, entries, reveals)`` over every client's randomness,
  committed before any is revealed; a client derives the graph itself and refuses a missing,
  extra or wrong reveal. :func:`committed_grinding` plays every freedom the server has left:
  colluders advertise after seeing the honest commitments, the target's view is chosen last
  (after every other reveal), reveals are withheld, altered, invented or reordered, and the
  session is restarted. What it measures is the number of colluders among the target's
  neighbours in the graph the target actually derived, session after session.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.forge import Forge, Session
from attacks.malicious.harness import client_updates
from attacks.malicious.isolated import invert_update, update_error
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg.identity import Identities
from secagg import SecAgg
from secagg.graph import NeighbourGraph

__all__ = ["target_neighbours", "grind_seed", "ChosenSeedResult", "chosen_seed", "GrindResult",
           "committed_grinding", "graph_grinding", "DEVIATIONS"]

#: What the server tries on the target's reveals, one restart each.
DEVIATIONS = ("withhold a colluder's reveal", "alter a colluder's reveal", "add a reveal for an outsider",
              "reorder the reveals")


def target_neighbours(roster: tuple[int, ...], k: int, seed: bytes, target: int) -> frozenset[int]:
    """``target``'s neighbours in the ring graph of ``seed``: what every party derives
    (:class:`~secagg.graph.NeighbourGraph`, ``O(k)`` Feistel inversions, so the server's
    grinding costs one neighbourhood per seed tried, not a whole graph)."""
    return frozenset(NeighbourGraph(tuple(roster), k, seed).neighbours(target))


def grind_seed(roster: Iterable[int], k: int, target: int, colluders: Iterable[int], *, want: int,
               tries: int = 100_000, start: int = 0) -> tuple[bytes | None, int, int]:
    """The first seed (of ``tries``) giving ``target`` at least ``want`` colluding neighbours:
    (seed or ``None``, the best count seen, seeds tried)."""
    ids = tuple(sorted(roster))
    bad = frozenset(colluders)
    best = -1
    for i in range(start, start + tries):
        seed = hashlib.sha256(b"ground seed" + i.to_bytes(8, "little")).digest()
        count = len(target_neighbours(ids, k, seed, target) & bad)
        best = max(best, count)
        if count >= want:
            return seed, count, i - start + 1
    return None, best, tries


@dataclass(frozen=True, eq=False)
class ChosenSeedResult:
    encoded: npt.NDArray[np.unsignedinteger] | None
    forge: Forge | None
    target: int
    seed: bytes | None
    colluding_neighbours: int
    seeds_tried: int
    seed_shares: int = 0
    key_shares: int = 0
    refusals: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return (self.encoded is not None and self.forge is not None
                and bool(np.array_equal(self.encoded, self.forge.encoded(self.target))))


def chosen_seed(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int, colluders: Iterable[int],
                tries: int = 100_000, digests: Mapping[int, bytes] | None = None,
                round_id: int = 0) -> ChosenSeedResult:
    """Semi-honest SecAgg+: announce a seed ground so that ``t`` colluders neighbour the target,
    run the round, unmask the target with the colluders' shares alone."""
    bad = tuple(sorted(int(c) for c in colluders))
    ids = tuple(sorted(updates))
    probe = config.parameters(ids, 1)
    seed, best, tried = grind_seed(ids, probe.neighbours, target, bad, want=probe.threshold, tries=tries)
    if seed is None:
        return ChosenSeedResult(None, None, target, None, best, tried)
    forge = Forge(config, updates, round_id=round_id, digests=digests, graph_seed=seed)
    sessions = {c: forge.session(c) for c in forge.roster}
    group = list(sessions.values())
    for s in group:
        forge.advertise(s)
    graph = forge.announced_graph()
    forge.share_honestly(group, group, graph)
    forge.mask_honestly(group, group)
    encoded, seeds, keys = forge.expose(sessions[target], [sessions[c] for c in bad])
    return ChosenSeedResult(encoded, forge, target, seed, best, tried, seeds, keys, forge.refusals)


@dataclass(frozen=True, eq=False)
class GrindResult:
    """``counts``: colluders among the target's neighbours, in the graph it derived, per
    restart; ``hindsight``: the most any of the views the server could still choose for the
    target would have given, computed *after* the target's reveal (too late to use);
    ``deviations``: what the target said to each deviation."""

    counts: tuple[int, ...]
    hindsight: tuple[int, ...]
    threshold: int
    neighbours: int
    deviations: dict[str, str]
    derived_matches: bool
    refusals: dict[str, str] = field(default_factory=dict)

    @property
    def best(self) -> int:
        return max(self.counts, default=0)


def _committed(forge: Forge, sessions: dict[int, Session], target: int, bad: tuple[int, ...],
               views: int) -> tuple[int, int, NeighbourGraph | None]:
    """One session: colluders advertise last; every other client reveals first; the target's view
    is the full one; afterwards, what other views (the full one less some colluders, each still a
    quorum) would have given."""
    p = forge.params
    order = sorted(sessions.values(), key=lambda s: (s.cid in bad, s.cid == target))
    for s in order:
        forge.advertise(s)
    group = [s for s in order if s.refused is None]
    table = forge.entries(group)
    t_sess = sessions[target]
    for s in group:
        if s is not t_sess:
            forge.graph(s, table)
    forge.graph(t_sess, table)
    graph = NeighbourGraph(p.roster, p.neighbours, forge.committed_seed(group))
    count = len(graph.neighbours(target) & set(bad))
    hindsight = count
    spare = len(group) - p.signatures_needed
    for v in range(1, min(views, spare) + 1):
        kept = [s for s in group if s.cid not in bad[:v]]
        other = NeighbourGraph(p.roster, p.neighbours, forge.committed_seed(kept))
        hindsight = max(hindsight, len(other.neighbours(target) & set(bad)))
    return count, hindsight, graph


def committed_grinding(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int,
                       colluders: Iterable[int], restarts: int = 3, views: int = 8, deviations: bool = True,
                       digests: Mapping[int, bytes] | None = None, round_id: int = 0) -> GrindResult:
    """Active SecAgg+: ``restarts`` fresh sessions played as described in the module docstring,
    and (``deviations``) one more restart per :data:`DEVIATIONS` entry."""
    bad = tuple(sorted(int(c) for c in colluders))
    counts, hindsight, refusals = [], [], {}
    matches = True
    params = None
    for _ in range(restarts):
        forge = Forge(config, updates, round_id=round_id, digests=digests)
        params = forge.params
        sessions = {c: forge.session(c) for c in forge.roster}
        count, late, graph = _committed(forge, sessions, target, bad, views)
        group = [s for s in sessions.values() if s.refused is None]
        t_sess = sessions[target]
        assert graph is not None
        forge.keys(t_sess, forge.neighbours(t_sess, group, graph), reveals=group)
        matches &= t_sess.refused is None and t_sess.client._neighbours == graph.neighbours(target)
        counts.append(count)
        hindsight.append(late)
        refusals.update(forge.refusals)
    said: dict[str, str] = {}
    for name in DEVIATIONS if deviations else ():
        forge = Forge(config, updates, round_id=round_id, digests=digests)
        params = forge.params
        sessions = {c: forge.session(c) for c in forge.roster}
        _, _, graph = _committed(forge, sessions, target, bad, 0)
        group = [s for s in sessions.values() if s.refused is None]
        t_sess = sessions[target]
        reveals = {s.cid: s.reveal for s in group}
        if name.startswith("withhold"):
            reveals.pop(bad[0])
        elif name.startswith("alter"):
            reveals[bad[0]] = bytes(32)
        elif name.startswith("add"):
            outsider = next(c for c in range(1, 10**6) if c not in forge.params)
            reveals[outsider] = bytes(32)
        else:
            reveals = dict(reversed(list(reveals.items())))
        peers = {o.cid: o.advert for o in forge.neighbours(t_sess, group, graph)}
        from privagg.messages import SERVER_ID
        from secagg.messages import KeysBroadcast

        peers[target] = t_sess.advert
        forge.send(t_sess, KeysBroadcast(forge.round_id, SERVER_ID, target, peers, reveals))
        said[name] = t_sess.refused or "accepted (the reveals travel sorted: the same seed, the same graph)"
    assert params is not None
    return GrindResult(tuple(counts), tuple(hindsight), params.threshold, params.neighbours, said, matches, refusals)


def graph_grinding(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                   colluders: Iterable[int] = (), target: int | None = None, neighbours: int = 3,
                   inversion: InversionConfig | None = None, restarts: int = 5,
                   round_id: int = 0) -> MaliciousOutcome:
    """Grinding in ``setting`` with ``neighbours`` per client. Semi-honest rounds take ``t = 2``
    (allowed there, so that two colluders suffice); active ones the default ``t``."""
    started = time.perf_counter()
    bad = tuple(sorted(int(c) for c in colluders))
    ids = setting.client_ids
    target = min(set(ids) - set(bad)) if target is None else target
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    if security == "semi-honest":
        config = SecAgg(neighbours=neighbours, threshold=2)
        chosen = chosen_seed(config, updates, target=target, colluders=bad, digests=digests, round_id=round_id)
        t = config.parameters(ids, 1).threshold
        common = dict(attack="graph-seed grinding (SecAgg+)", security=security, clients=len(ids), threshold=t,
                      targets=(target,), refusals=dict(chosen.refusals), aborted=None,
                      extra={"seeds_tried": chosen.seeds_tried, "colluding_neighbours": chosen.colluding_neighbours})
        if chosen.encoded is None:
            return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                    summary=(f"not possible: at most {chosen.colluding_neighbours} colluding "
                                             f"neighbours in {chosen.seeds_tried} seeds, {t} needed"))
        update = config.encoding.decode(chosen.encoded, clients=1)
        recovery = invert_update(setting, spec, update, target, inversion=inversion)
        return MaliciousOutcome(
            **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
            update_error=update_error(update, config.encoding.quantize(updates[target])),
            summary=(f"not detected: after {chosen.seeds_tried} seeds tried offline, the announced seed puts "
                     f"{chosen.colluding_neighbours} colluders next to client {target} (k = {neighbours}, t = {t}); "
                     f"their shares unmask its update and iDLG recovered {recovery.recovered} of "
                     f"{len(recovery.truth)} of its images (mean PSNR {recovery.mean_psnr_db:.1f} dB)"))
    config = SecAgg(security="active", neighbours=neighbours, identities=Identities(ids))
    ground = committed_grinding(config, updates, target=target, colluders=bad, restarts=restarts, digests=digests,
                                round_id=round_id)
    refused = {name: said for name, said in ground.deviations.items() if not said.startswith("accepted")}
    labels = {name: f"{target} ({name})" for name in refused}
    return MaliciousOutcome(
        attack="graph-seed grinding (SecAgg+)", security=security, clients=len(ids), threshold=ground.threshold,
        targets=(target,), refusals={labels[n]: s for n, s in refused.items()}, aborted=None, recovery=None,
        completed=False, seconds=time.perf_counter() - started,
        extra={"colluding_neighbours": list(ground.counts), "hindsight": list(ground.hindsight)},
        summary=(f"detected: the target refused {len(refused)} of {len(ground.deviations)} tampered reveal sets "
                 f"({'; '.join(sorted(set(refused.values())))[:160]}); over {restarts} committed graphs it had "
                 f"{list(ground.counts)} colluding neighbours of {ground.neighbours} (t = {ground.threshold}), "
                 f"and the server learned each graph only once every commitment was fixed"))

"""A forged dropout that beats the consistency check: second sessions under the same round.

The consistency check of active secure aggregation rests on one count: each honest client
signs one survivor set, so two conflicting sets cannot both gather the quorum ``q = 2n/3 + 1``
while fewer than ``2q - n`` clients collude. A signature covers the session digest ``S`` of the
signer's own view, and a verifier counts only signatures on *its* ``S``: signatures of one view
never count in another. But nothing stops a client from being asked to run the *same round*
again: the server picks the round id and the nonce, so a second session of a client has the
same header digest ``H0``, fresh keys, a fresh commitment, and a second signature to give, for
another view.

The split, complete graph (``neighbours="all"``), target ``T``, colluders ``C``:

1. Phase A. ``T``, one session of every honest client and a session per colluder advertise.
   The server shows ``T``, the clients ``Y_a`` and the colluders one view ``E_A`` made of all
   those advertisements, and runs it to the end: the survivor set ``{T} + Y_a + C`` is signed by
   ``T``, ``Y_a`` and ``C`` (a quorum when ``1 + |Y_a| + |C| >= q``) and ``Y_a`` reveal their
   shares of ``T``'s self-mask seed (``T`` "survived"). ``T`` accepted every advertisement of
   ``E_A``, so it also shared its secrets with the sessions of ``Y_b``, which are still waiting.
2. Phase B, once ``Y_a``'s sessions have finished: the server starts a *second* session for
   each client of ``Y_a`` (same announced round) and a second one per colluder, and shows
   ``Y_b`` and them a view ``E_B``: ``T``'s advertisement, ``Y_b``'s, the second sessions'.
   Every client of it signs the survivor set ``Y_a + Y_b + C`` (all but ``T``), a quorum in
   ``E_B``, and ``Y_b`` reveal their shares of ``T``'s *mask key* (``T`` "dropped").
3. With the colluders' own shares of ``T``, the server holds ``t`` of each, rebuilds ``T``'s
   seed and mask key (both check against ``T``'s advertisement) and strips every mask from its
   masked input: ``T``'s individual input, exactly.

No honest client ever runs two sessions at once (each second session starts after the first has
finished, as a deployment that restarts a round would), and none sees anything it refuses.
It needs ``|Y_b| + |C| >= t`` and ``1 + |Y_a| + |C| >= q`` out of ``n - 1 - |C|`` honest
clients, i.e. ``|C| >= q + t - n``: 3 colluders of 10, 7 of 30, 18 of 100, all fewer than the
``n / 3`` the quorum is claimed to tolerate (without second sessions the bound is ``2q - n``: 4,
12, 34). Semi-honest secure aggregation has no consistency check, and the same two groups of a
single session each give the server its share (the forged dropout with colluders, which needs
``|C| >= 2t - n``).
"""

from __future__ import annotations

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

__all__ = ["SplitResult", "quorum_split", "minimum_colluders", "second_session_split"]


def minimum_colluders(config: SecAgg, n: int) -> int:
    """The fewest colluders the split needs for ``n`` clients: ``q + t - n`` with active security
    (second sessions), ``2t - n`` without (one session each)."""
    p = config.parameters(range(1, n + 1), 1)
    need = p.signatures_needed + p.threshold - n if config.active else 2 * p.threshold - n
    return max(need, 0)


@dataclass(frozen=True, eq=False)
class SplitResult:
    """What the split got. ``encoded``: the target's encoded input, or ``None``."""

    encoded: npt.NDArray[np.unsignedinteger] | None
    forge: Forge
    target: int
    colluders: tuple[int, ...]
    told_survived: tuple[int, ...]
    told_dropped: tuple[int, ...]
    second_sessions: tuple[int, ...]
    seed_shares: int
    key_shares: int
    signatures: tuple[int, int]
    overlapping: bool
    refusals: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.encoded is not None and bool(np.array_equal(self.encoded, self.forge.encoded(self.target)))


def quorum_split(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, colluders: Iterable[int],
                 target: int | None = None, digests: Mapping[int, bytes] | None = None,
                 round_id: int = 0, second_sessions: bool = True,
                 second_updates: Mapping[int, npt.ArrayLike] | None = None) -> SplitResult:
    """Run the split against ``target`` (default: the smallest honest id) over the complete graph.

    ``second_sessions=False`` (active): the plain forged dropout in one view, every client
    running one session; both survivor sets then need a quorum of that one view, which takes
    ``2q - n`` colluders. ``second_updates`` (active): what the second sessions' clients
    trained this time. By default their update of the round, whose second masked input their
    ledger refuses (privagg.ledger); a slightly changed model (a few values one fixed-point step
    off) gets past the ledger, and then the S-bound shares must stop the split on their own."""
    if config.neighbours != "all":
        raise ValueError("the split is built for the complete graph (neighbours='all')")
    forge = Forge(config, updates, round_id=round_id, digests=digests)
    p = forge.params
    bad = tuple(sorted(int(c) for c in colluders))
    target = min(set(forge.roster) - set(bad)) if target is None else target
    honest = [c for c in forge.roster if c != target and c not in bad]
    # The group told "T dropped" reveals T's mask key: t shares with the colluders' (and, in one
    # view, a quorum of signatures); everyone else is told "T survived" and reveals T's seed.
    need = p.threshold if second_sessions or not config.active else p.signatures_needed
    dropped_group = tuple(honest[:max(need - len(bad), 0)])
    survived_group = tuple(honest[len(dropped_group):])
    if not config.active:
        return _split_semi_honest(forge, target, bad, survived_group, dropped_group)
    if not second_sessions:
        return _split_one_view(forge, target, bad, survived_group, dropped_group)
    return _split_active(forge, target, bad, survived_group, dropped_group, second_updates)


def _finish(forge: Forge, t_sess: Session, target: int, bad: tuple[int, ...], survived: tuple[int, ...],
            dropped: tuple[int, ...], holders: list[Session], colluder_sessions: list[Session],
            second: tuple[int, ...], signatures: tuple[int, int], overlapping: bool) -> SplitResult:
    encoded, seeds, keys = forge.expose(t_sess, colluder_sessions, holders)
    return SplitResult(encoded, forge, target, bad, survived, dropped, second, seeds, keys, signatures,
                       overlapping, forge.refusals)


def _split_semi_honest(forge: Forge, target: int, bad: tuple[int, ...], survived: tuple[int, ...],
                       dropped: tuple[int, ...]) -> SplitResult:
    sessions = {cid: forge.session(cid) for cid in forge.roster}
    for s in sessions.values():
        forge.advertise(s)
    everyone = list(sessions.values())
    for s in everyone:
        forge.keys(s, [o for o in everyone if o is not s])
    for s in everyone:
        forge.masked(s, [o for o in everyone if o is not s])
    full = tuple(forge.roster)
    without = tuple(c for c in full if c != target)
    for cid in (target, *survived):
        forge.unmask(sessions[cid], full)
    for cid in dropped:
        forge.unmask(sessions[cid], without)
    holders = [sessions[c] for c in (target, *survived, *dropped)]
    return _finish(forge, sessions[target], target, bad, survived, dropped, holders,
                   [sessions[c] for c in bad], (), (0, 0), False)


def _split_one_view(forge: Forge, target: int, bad: tuple[int, ...], survived: tuple[int, ...],
                    dropped: tuple[int, ...]) -> SplitResult:
    sessions = {cid: forge.session(cid) for cid in forge.roster}
    for s in sessions.values():
        forge.advertise(s)
    everyone = list(sessions.values())
    for s in everyone:
        forge.keys(s, [o for o in everyone if o is not s])
    for s in everyone:
        forge.masked(s, [o for o in everyone if o is not s])
    full = tuple(forge.roster)
    without = tuple(c for c in full if c != target)
    groups = {full: [sessions[c] for c in (target, *survived)], without: [sessions[c] for c in dropped]}
    counts = []
    for survivors, members in groups.items():
        for s in members:
            forge.consistency(s, survivors)
        sigs = {s.cid: s.signature for s in members if s.signature}
        sigs.update({c: forge.colluder_signature(sessions[c], survivors) for c in bad})
        counts.append(len(sigs))
        for s in members:
            forge.unmask(s, survivors, sigs)
    holders = [sessions[c] for c in (target, *survived, *dropped)]
    return _finish(forge, sessions[target], target, bad, survived, dropped, holders,
                   [sessions[c] for c in bad], (), (counts[0], counts[1]), False)


def _split_active(forge: Forge, target: int, bad: tuple[int, ...], survived: tuple[int, ...],
                  dropped: tuple[int, ...], second_updates: Mapping[int, npt.ArrayLike] | None = None
                  ) -> SplitResult:
    # Phase A: T, a first session of every honest client, a session per colluder.
    t_sess = forge.session(target, f"{target} (target)")
    first = {cid: forge.session(cid) for cid in (*survived, *dropped)}
    coll_a = {cid: forge.session(cid, f"{cid}#A (colluder)") for cid in bad}
    for s in (t_sess, *first.values(), *coll_a.values()):
        forge.advertise(s)
    view_a = [t_sess, *first.values(), *coll_a.values()]  # E_A: T accepts all of it
    class_a = [t_sess, *(first[c] for c in survived), *coll_a.values()]
    for s in class_a:
        forge.keys(s, [o for o in view_a if o is not s])
    for s in class_a:
        forge.masked(s, [o for o in class_a if o is not s])
    sigma_a = tuple(sorted((target, *survived, *bad)))
    honest_a = [t_sess, *(first[c] for c in survived)]
    for s in honest_a:
        forge.consistency(s, sigma_a)
    sigs_a = {s.cid: s.signature for s in honest_a if s.signature}
    sigs_a.update({c.cid: forge.colluder_signature(c, sigma_a) for c in coll_a.values()})
    for s in honest_a:
        forge.unmask(s, sigma_a, sigs_a)
    # Phase B: second sessions of the clients told "T survived", once their first has finished.
    overlapping = not all(first[c].client.finished for c in survived)
    second = {cid: forge.session(cid, update=None if second_updates is None else second_updates[cid])
              for cid in survived}
    coll_b = {cid: forge.session(cid, f"{cid}#B (colluder)") for cid in bad}
    for s in (*second.values(), *coll_b.values()):
        forge.advertise(s)
    view_b = [t_sess, *second.values(), *(first[c] for c in dropped), *coll_b.values()]
    class_b = view_b[1:]
    for s in class_b:
        forge.keys(s, [o for o in view_b if o is not s])
    for s in class_b:
        # T's shares reach the "dropped" group only: T shared with their sessions, and with the
        # *first* sessions of the others (its share for those would not authenticate here).
        senders = [o for o in view_b if o is not s and (o is not t_sess or s.cid in dropped)]
        forge.masked(s, senders)
    sigma_b = tuple(sorted(c for c in forge.roster if c != target))
    honest_b = [*second.values(), *(first[c] for c in dropped)]
    for s in honest_b:
        forge.consistency(s, sigma_b)
    sigs_b = {s.cid: s.signature for s in honest_b if s.signature}
    sigs_b.update({c.cid: forge.colluder_signature(c, sigma_b) for c in coll_b.values()})
    for s in honest_b:
        forge.unmask(s, sigma_b, sigs_b)
    holders = [t_sess, *first.values()]
    return _finish(forge, t_sess, target, bad, survived, dropped, holders, list(coll_a.values()),
                   tuple(sorted(second)), (len(sigs_a), len(sigs_b)), overlapping)


def second_session_split(setting: Setting, *, security: Literal["semi-honest", "active"] = "active",
                         colluders: Iterable[int] = (), target: int | None = None,
                         inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """The split against ``target`` in ``setting`` (complete graph), scored by iDLG on the
    unmasked update."""
    started = time.perf_counter()
    bad = tuple(sorted(int(c) for c in colluders))
    ids = setting.client_ids
    config = SecAgg(security=security, identities=Identities(ids) if security == "active" else None)
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    result = quorum_split(config, updates, colluders=bad, target=target, digests=digests, round_id=round_id)
    p = result.forge.params
    n, t, q = len(ids), p.threshold, p.signatures_needed
    need = minimum_colluders(config, n)
    label = f"forged dropout by second sessions (t={t}, quorum {q} of {n}, {len(bad)} colluding)"
    common = dict(attack=label, security=security, clients=n, threshold=t, targets=(result.target,),
                  refusals=dict(result.refusals), aborted=None, extra={"minimum_colluders": need})
    got = (f"{result.seed_shares} shares of its self-mask seed and {result.key_shares} of its mask key "
           f"({t} needed of each)")
    if result.encoded is None:
        caught = f"detected: {len(result.refusals)} sessions refused; " if result.refusals else "not possible: "
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=(f"{caught}the server got {got}; the split needs {need} colluders "
                                         f"at n = {n}"))
    update = config.encoding.decode(result.encoded, clients=1)
    truth = config.encoding.quantize(updates[result.target])
    recovery = invert_update(setting, spec, update, result.target, inversion=inversion)
    how = "not detected"
    if config.active:
        how += (f": second sessions of clients {list(result.second_sessions)} under the same round id and nonce; "
                f"the two survivor sets gathered {result.signatures[0]} and {result.signatures[1]} signatures "
                f"in two views of the session ({q} needed in each)")
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, update_error=update_error(update, truth),
        seconds=time.perf_counter() - started,
        summary=(f"{how}; the server got {got}, unmasked client {result.target}'s individual update and iDLG "
                 f"recovered {recovery.recovered} of {len(recovery.truth)} of its images (mean PSNR "
                 f"{recovery.mean_psnr_db:.1f} dB)"))

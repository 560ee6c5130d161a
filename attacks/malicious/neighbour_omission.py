"""Neighbour omission (SecAgg+): the target has ``t - 1`` colluding neighbours, one short of
unmasking it. The server hides its honest neighbours from it, so that it masks with colluders
only; then ``t - 1`` colluders' seed shares and the target's own make ``t``, and every pairwise
mask is a colluder's.

Three places to hide them (:data:`VARIANTS`):

* ``"keys"``: the key broadcast carries only the colluders' advertisements;
* ``"shares"``: the broadcast is honest, but the share relay carries only the colluders' shares;
* ``"survivors"``: the round is honest up to the masked inputs, then the survivor set leaves the
  target's honest neighbours out (their holders reveal their mask keys, the target its seed share).

Semi-honest clients go on with ``t - 1`` live neighbours (their own share makes ``t``), so each
variant unmasks the target. Active clients need ``t`` live neighbours of their own, before
masking and among the survivors: with fewer than ``t`` colluding neighbours one honest
neighbour is always left, and the target refuses or its mask with that neighbour stays unknown.

The premise, ``t - 1`` colluders next to the target: in semi-honest SecAgg+ the server grinds
the seed (:func:`attacks.malicious.graph_grinding.grind_seed`); in active SecAgg+ it restarts
sessions until the committed graph happens to give it (each restart costs a whole session).
"""

from __future__ import annotations

import dataclasses

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.forge import Forge, Session
from attacks.malicious.graph_grinding import grind_seed
from attacks.malicious.harness import client_updates
from attacks.malicious.isolated import invert_update, update_error
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg.identity import Identities
from privagg.ledger import ContributionLedger
from secagg import SecAgg
from secagg.graph import NeighbourGraph

__all__ = ["VARIANTS", "OmissionResult", "omit_neighbours", "neighbour_omission"]

VARIANTS = ("keys", "shares", "survivors")


@dataclass(frozen=True, eq=False)
class OmissionResult:
    encoded: npt.NDArray[np.unsignedinteger] | None
    forge: Forge | None
    variant: str
    target: int
    colluding_neighbours: tuple[int, ...]  # the accomplices next to the target
    hidden: tuple[int, ...]  # the target's honest neighbours the server hid
    attempts: int  # seeds ground (semi-honest) or sessions started (active) to get the premise
    seed_shares: int = 0
    key_shares: int = 0
    refusals: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return (self.encoded is not None and self.forge is not None
                and bool(np.array_equal(self.encoded, self.forge.encoded(self.target))))


def _premise(config: SecAgg, updates: Mapping[int, npt.ArrayLike], target: int, bad: tuple[int, ...],
             digests: Mapping[int, bytes] | None, round_id: int, max_restarts: int, adaptive: bool
             ) -> tuple[Forge | None, dict[int, Session], NeighbourGraph | None, int]:
    ids = tuple(sorted(updates))
    probe = config.parameters(ids, 1)
    want = 0 if adaptive else probe.threshold - 1
    if not config.active:
        seed, _, tried = grind_seed(ids, probe.neighbours, target, bad, want=want)
        if seed is None:
            return None, {}, None, tried
        forge = Forge(config, updates, round_id=round_id, digests=digests, graph_seed=seed)
        sessions = {c: forge.session(c) for c in forge.roster}
        for s in sessions.values():
            forge.advertise(s)
        return forge, sessions, forge.announced_graph(), tried
    for attempt in range(1, max_restarts + 1):
        forge = Forge(config, updates, round_id=round_id, digests=digests)
        sessions = {c: forge.session(c) for c in forge.roster}
        group = list(sessions.values())
        for s in group:
            forge.advertise(s)
        graph = forge.commit_graph(group)
        assert graph is not None
        if len(graph.neighbours(target) & set(bad)) >= want:
            return forge, sessions, graph, attempt
    return None, {}, None, max_restarts


def omit_neighbours(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int, colluders: Iterable[int],
                    variant: str = "keys", digests: Mapping[int, bytes] | None = None, round_id: int = 0,
                    max_restarts: int = 400, adaptive: bool = False) -> OmissionResult:
    """One variant of the omission against ``target`` (SecAgg+, sparse graph). ``adaptive``: the
    adversary corrupts ``t - 1`` of the target's neighbours once the graph is fixed (stronger than
    colluders fixed in advance; ``colluders`` is then ignored)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    bad = tuple(sorted(int(c) for c in colluders))
    forge, sessions, graph, attempts = _premise(config, updates, target, bad, digests, round_id, max_restarts,
                                                adaptive)
    if forge is None or graph is None:
        return OmissionResult(None, None, variant, target, (), (), attempts)
    p = forge.params
    group = list(sessions.values())
    t_sess = sessions[target]
    near = graph.neighbours(target)
    if adaptive:
        bad = tuple(sorted(near)[: p.threshold - 1])
    helpers_ids = tuple(sorted(near & set(bad)))[: p.threshold - 1]
    helpers = [sessions[c] for c in helpers_ids]
    hidden = tuple(sorted(near - set(bad)))
    reveals = group if p.sparse_active else []
    others = [s for s in group if s is not t_sess]
    if variant == "keys":
        forge.keys(t_sess, helpers, reveals=reveals)
    else:
        forge.keys(t_sess, forge.neighbours(t_sess, group, graph), reveals=reveals)
    forge.share_honestly(others, group, graph)
    if variant == "shares":
        forge.masked(t_sess, helpers)
        forge.mask_honestly(others, group)
    else:
        forge.mask_honestly(group, group)
    holders: list[Session] = [t_sess]
    if t_sess.vector is not None:
        # Survivors: everyone who sent a masked input, less the target's hidden honest neighbours.
        survivors = tuple(sorted(s.cid for s in group if s.vector is not None and s.cid not in hidden))
        alive = [s for s in group if s.cid in survivors]
        honest_alive = [s for s in alive if s.cid not in bad]
        signatures: dict[int, bytes] = {}
        if p.active:
            for s in honest_alive:
                forge.consistency(s, survivors)
            signatures = {s.cid: s.signature for s in honest_alive if s.signature}
            signatures.update({c: forge.colluder_signature(sessions[c], survivors) for c in bad if c in survivors
                               and sessions[c].client._session})
        for s in honest_alive:
            forge.unmask(s, survivors, signatures)
        holders = honest_alive
    encoded, seeds, keys = forge.expose(t_sess, [sessions[c] for c in bad], holders)
    return OmissionResult(encoded, forge, variant, target, helpers_ids, hidden, attempts, seeds, keys,
                          forge.refusals)


def neighbour_omission(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                       colluders: Iterable[int] = (), target: int | None = None, neighbours: int = 3,
                       inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """The omission in ``setting`` (``neighbours`` per client, default threshold): semi-honest
    runs the ``"keys"`` variant, active runs all three."""
    started = time.perf_counter()
    bad = tuple(sorted(int(c) for c in colluders))
    ids = setting.client_ids
    target = min(set(ids) - set(bad)) if target is None else target
    config = SecAgg(security=security, neighbours=neighbours,
                    identities=Identities(ids) if security == "active" else None)
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    t = config.parameters(ids, 1).threshold
    label = "neighbour omission (SecAgg+)"
    variants = ("keys",) if security == "semi-honest" else VARIANTS
    # Each variant is its own experiment (its own deployment, hence its own clients' ledger): run
    # one after another on the same clients and updates, the later ones would be refused earlier,
    # by the honest clients' ledger (privagg.ledger), and never reach the check they aim at.
    results = [omit_neighbours(dataclasses.replace(config, ledger=ContributionLedger()) if i else config, updates,
                               target=target, colluders=bad, variant=v, digests=digests, round_id=round_id)
               for i, v in enumerate(variants)]
    refusals = {f"{label} ({r.variant}): {name}": said for r in results for name, said in r.refusals.items()}
    common = dict(attack=label, security=security, clients=len(ids), threshold=t, targets=(target,),
                  refusals=refusals, aborted=None,
                  extra={"attempts": [r.attempts for r in results], "variants": list(variants)})
    won = next((r for r in results if r.encoded is not None), None)
    if won is None:
        said = "; ".join(f"{r.variant}: {next(iter(r.refusals.values()), 'no refusal')}" for r in results)
        premise = results[0]
        if premise.forge is None:
            return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                    summary=f"not possible: no graph put {t - 1} colluders next to the target")
        how = "detected" if refusals else "not possible"
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=(f"{how}: with {t - 1} colluders next to client {target} (k = {neighbours}, "
                                         f"t = {t}, after {premise.attempts} sessions), the server hid its honest "
                                         f"neighbours three ways and the target refused each ({said[:300]})"))
    update = config.encoding.decode(won.encoded, clients=1)
    recovery = invert_update(setting, spec, update, target, inversion=inversion)
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
        update_error=update_error(update, config.encoding.quantize(updates[target])),
        summary=(f"not detected: the seed (ground in {won.attempts} tries) puts {t - 1} colluders next to client "
                 f"{target}, the server hides its honest neighbours {list(won.hidden)} ({won.variant}) and the "
                 f"target masks with the colluders only (k = {neighbours}, t = {t}); their seed shares and the "
                 f"target's own unmask it and iDLG recovered {recovery.recovered} of {len(recovery.truth)} of its "
                 f"images (mean PSNR {recovery.mean_psnr_db:.1f} dB)"))

"""Replay across sessions of the same round: old advertisements, old signatures.

The server runs a session in which some of the target's peers "drop" after sharing their keys,
so that the others legitimately reveal those peers' mask-key shares and the server rebuilds
their mask keys. It then starts a new session of the *same* round (same round id, same nonce:
the same header digest ``H0``, which the server alone chooses) and relays those peers' old
advertisements to the target instead of their new ones, hoping the target masks with keys the
server knows. In active mode it also replays the old consistency signatures on a survivor set
of its choosing.

What happens to protocol v2: the old advertisements *are* accepted (their signatures cover
``H0`` and the model digest, both unchanged), but the target masks only with peers that sent
it shares in this session, and no stale key can encrypt a share the target can open: the
target either refuses (too few live neighbours, or a share that does not authenticate) or masks
with fresh peers whose masks the server cannot remove. Old consistency signatures cover the old
session digest ``S``, which holds every client's fresh commitment: none verifies.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.malicious.forge import Forge, Session
from attacks.malicious.harness import client_updates
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg.identity import Identities
from secagg import SecAgg
from secagg import keys as kx

__all__ = ["ReplayResult", "old_session", "replay_adverts", "replay_signatures", "replay"]


@dataclass(frozen=True, eq=False)
class ReplayResult:
    encoded: npt.NDArray[np.unsignedinteger] | None
    forge: Forge
    old: Forge
    target: int
    replayed: tuple[int, ...]
    rebuilt: tuple[int, ...]  # whose old mask keys the server rebuilt
    stale_accepted: tuple[int, ...]  # whose old advertisement the target accepted in the new session
    valid_signatures: int | None = None
    answered: bool = False  # the target revealed shares
    refusals: dict[str, str] = field(default_factory=dict)


def _survivor_round(forge: Forge, sessions: dict[int, Session], dropped: Iterable[int]) -> dict[int, bytes]:
    """Run ``forge``'s session honestly, ``dropped`` vanishing after they shared their keys;
    returns the mask private keys the server rebuilt for them (id -> raw key)."""
    group = list(sessions.values())
    for s in group:
        forge.advertise(s)
    graph = forge.commit_graph(group)
    forge.share_honestly(group, group, graph)
    gone = set(dropped)
    alive = [s for s in group if s.cid not in gone]
    forge.mask_honestly(alive, group)
    survivors = tuple(sorted(s.cid for s in alive))
    signatures: dict[int, bytes] = {}
    if forge.params.active:
        for s in alive:
            forge.consistency(s, survivors)
        signatures = {s.cid: s.signature for s in alive if s.signature}
    for s in alive:
        forge.unmask(s, survivors, signatures)
    rebuilt = {}
    for cid in sorted(gone):
        _, key_shares = forge.revealed(alive, sessions[cid])
        public = sessions[cid].mask_pk
        key = forge.rebuild(key_shares, lambda k, pk=public: kx.public_bytes(kx.private_from_bytes(k)) == pk)
        if key is not None:
            rebuilt[cid] = key
    return rebuilt


def old_session(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, dropped: Iterable[int], round_id: int,
                digests: Mapping[int, bytes] | None = None, nonce: bytes | None = None
                ) -> tuple[Forge, dict[int, Session], dict[int, bytes]]:
    """An honest-looking session in which ``dropped`` "vanish" after sharing: the server ends up
    with their mask keys, legitimately."""
    forge = Forge(config, updates, round_id=round_id, digests=digests, nonce=nonce)
    sessions = {c: forge.session(c) for c in forge.roster}
    return forge, sessions, _survivor_round(forge, sessions, dropped)


def replay_adverts(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int, colluders: Iterable[int],
                   dropped: Iterable[int], round_id: int = 0, digests: Mapping[int, bytes] | None = None,
                   relay_stale_shares: bool = True) -> ReplayResult:
    """Old advertisements of ``dropped`` (whose mask keys an old session of the same round gave
    the server) relayed to ``target`` in a new session. With ``relay_stale_shares`` the server
    also hands the target those peers' old share ciphertexts; without, only the colluders'
    shares (its only other choice is fresh honest shares, whose masks it cannot remove)."""
    gone = tuple(sorted(int(c) for c in dropped))
    bad = tuple(sorted(int(c) for c in colluders))
    old, old_sessions, rebuilt = old_session(config, updates, dropped=gone, round_id=round_id, digests=digests)
    forge = Forge(config, updates, round_id=round_id, digests=digests, nonce=old.nonce)  # the same H0
    sessions = {c: forge.session(c) for c in forge.roster}
    group = list(sessions.values())
    for s in group:
        forge.advertise(s)
    t_sess = sessions[target]
    others = [s for s in group if s is not t_sess]
    graph = forge.commit_graph(group)
    stale = {c: old_sessions[c].advert for c in gone if c in rebuilt}
    forge.keys(t_sess, forge.neighbours(t_sess, group, graph),
               reveals=group if forge.params.sparse_active else [], override=stale)
    forge.share_honestly(others, group, graph)
    accepted = tuple(sorted(c for c in stale if c in t_sess.shares))
    helpers = [sessions[c] for c in bad]
    if relay_stale_shares:
        old_ciphertexts = {c: old_sessions[c].shares[target] for c in stale if target in old_sessions[c].shares}
        forge.masked(t_sess, helpers, override=old_ciphertexts)
    else:
        forge.masked(t_sess, helpers)
    encoded = None
    if t_sess.vector is not None:
        # The stale peers never had a share of the target to send: its masks are the colluders'
        # (plus, for the server's reckoning, whatever the stale keys would give: nothing).
        encoded, _, _ = forge.expose(t_sess, helpers, [])
    return ReplayResult(encoded, forge, old, target, tuple(stale), tuple(sorted(rebuilt)), accepted,
                        answered=t_sess.answer is not None, refusals=forge.refusals)


def replay_signatures(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int,
                      colluders: Iterable[int], round_id: int = 0,
                      digests: Mapping[int, bytes] | None = None,
                      new_updates: Mapping[int, npt.ArrayLike] | None = None) -> ReplayResult:
    """Active: honest clients' consistency signatures from an old session of the same round (same
    nonce, same model digest) replayed on the same survivor set in a new session.

    ``new_updates``: what the clients trained for the new session. By default the same updates,
    whose second masked input every client's ledger refuses (privagg.ledger), so nobody signs
    at all; a slightly changed model (a few values one fixed-point step off, the one way past the
    ledger) lets the new session reach the consistency check, where the replay itself is tried."""
    bad = tuple(sorted(int(c) for c in colluders))
    old, old_sessions, _ = old_session(config, updates, dropped=(), round_id=round_id, digests=digests)
    survivors = tuple(old.roster)
    old_signatures = {c: s.signature for c, s in old_sessions.items() if s.signature}
    forge = Forge(config, updates if new_updates is None else new_updates, round_id=round_id, digests=digests,
                  nonce=old.nonce)
    sessions = {c: forge.session(c) for c in forge.roster}
    group = list(sessions.values())
    for s in group:
        forge.advertise(s)
    graph = forge.commit_graph(group)
    forge.share_honestly(group, group, graph)
    forge.mask_honestly(group, group)
    t_sess = sessions[target]
    forge.consistency(t_sess, survivors)
    replayed = {c: sig for c, sig in old_signatures.items() if c != target and c not in bad}
    replayed[target] = t_sess.signature
    replayed.update({c: forge.colluder_signature(sessions[c], survivors, t_sess.digest) for c in bad})
    valid = sum(forge.config.trusted_roster().verify(c, sig, _payload(t_sess, survivors))  # type: ignore[union-attr]
                for c, sig in replayed.items())
    forge.unmask(t_sess, survivors, replayed)
    return ReplayResult(None, forge, old, target, tuple(sorted(replayed)), (), (), valid, t_sess.answer is not None,
                        forge.refusals)


def _payload(sess: Session, survivors: tuple[int, ...]) -> bytes:
    from secagg.transcript import survivors_payload

    return survivors_payload(sess.digest, survivors)


def replay(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
           colluders: Iterable[int] = (), target: int | None = None, round_id: int = 0) -> MaliciousOutcome:
    """The advertisement replay in ``setting``: the old session "drops" as many of the target's
    honest peers as it can while still finishing (``n - max(t, quorum)``), the new one relays
    their old advertisements and share ciphertexts to the target."""
    started = time.perf_counter()
    bad = tuple(sorted(int(c) for c in colluders))
    ids = setting.client_ids
    target = min(set(ids) - set(bad)) if target is None else target
    config = SecAgg(security=security, identities=Identities(ids) if security == "active" else None)
    updates, digests, _ = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    p = config.parameters(ids, 1)
    room = len(ids) - max(p.threshold, p.signatures_needed)
    honest = [c for c in ids if c != target and c not in bad]
    result = replay_adverts(config, updates, target=target, colluders=bad, dropped=honest[:room],
                            round_id=round_id, digests=digests)
    common = dict(attack="replay of old advertisements (same round id and nonce)", security=security,
                  clients=len(ids), threshold=p.threshold, targets=(target,), refusals=dict(result.refusals),
                  aborted=None,
                  extra={"replayed": list(result.replayed), "stale_accepted": list(result.stale_accepted)})
    refused = result.refusals.get(f"{target}#1", "")
    if result.encoded is not None:
        return MaliciousOutcome(**common, completed=True, recovery=None, seconds=time.perf_counter() - started,
                                summary="the target masked with replayed keys only")  # not reached in v2
    accepted = (f"the target accepted the old advertisements of clients {list(result.stale_accepted)} (their "
                f"signatures cover the same header and model) but " if result.stale_accepted else "")
    how = (f"detected: {accepted}then refused ({refused})" if refused else
           f"not possible: {accepted}masks only with peers that sent it shares in this session")
    return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                            summary=f"{how}; the server rebuilt {len(result.rebuilt)} old mask keys, and none is "
                                    f"in the target's masked input")

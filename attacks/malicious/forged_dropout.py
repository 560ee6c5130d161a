"""Attack (b), forged dropout: after its target sent its masked input, the server tells some
clients that the target survived (they reveal shares of its self-mask seed) and the others that
it dropped out (they reveal shares of its pairwise-mask key). With both secrets the server
strips every mask from the target's masked input: its individual update, exactly as encoded.

What stops it, and when:

* **The threshold.** Each honest client answers one unmasking request per round, so the two
  groups are disjoint; each must hand over ``t`` shares. With ``n`` clients and no accomplice
  that needs ``2t <= n`` (the target's own answer counts for the seed). SecAgg's default ``t``
  is a strict majority, so the split alone fails; a semi-honest configuration with
  ``t <= n/2`` (allowed, it tolerates more dropouts) falls to it.
* **Colluding clients.** A client in league with the server gives it *both* of its shares of
  the target (the adversary holds its secret state, see :data:`privagg.colluding`), so ``c``
  colluders lower the bar to ``2t <= n + c``.
* **The consistency check** (``security="active"``): every client signs the survivor set it is
  shown and reveals shares only for a set signed by a quorum ``q`` of the roster. Two
  conflicting sets cannot both be signed by a quorum of *honest* clients when ``q > n/2``, so
  the honest clients shown the set without enough signatures refuse. Colluders sign both
  sets, though: the check holds only while ``2q > n + c``.

:func:`forged_dropout` runs the split as well as the attacker can (it gives the "survived"
group just enough clients to reach ``max(t, q)`` and everyone else to the "dropped" group),
records every refusal, and when it holds ``t`` shares of each kind unmasks the target and runs
iDLG on the update it obtained.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

import numpy as np

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.harness import HandDrivenRound, client_updates
from attacks.malicious.isolated import invert_update, update_error
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg.encoding import add_mod, sub_mod
from privagg.messages import SERVER_ID
from secagg import SecAgg
from secagg import keys as kx
from secagg.round import ADVERTISE, CONSISTENCY, MASKED, UNMASK
from secagg.transcript import survivors_payload
from secagg.messages import ConsistencyRequest, UnmaskRequest
from secagg.prg import expand_mask
from secagg.shamir import reconstruct_secret, share_from_bytes

__all__ = ["forged_dropout", "unmask_individual"]


def unmask_individual(masked: np.ndarray, self_seed: bytes, mask_key: bytes, *, client: int, peers: dict[int, bytes],
                      session: bytes, bits: int) -> np.ndarray:
    """The encoded input of ``client`` from its masked vector, its self-mask seed and its mask
    private key; ``peers``: the mask public keys of the neighbours it masked with; ``session``:
    the round's header digest (public: every party computes it from the announced round)."""
    out = masked.copy()
    sub_mod(out, expand_mask(self_seed, out.shape[0], bits), bits)
    private = kx.private_from_bytes(mask_key)
    for peer, public in sorted(peers.items()):
        secret = kx.pair_secret(private, kx.public_from_bytes(public, peer), peer)
        mask = expand_mask(kx.mask_seed(secret, session, client, peer), out.shape[0], bits)
        # The client added the pairwise mask when its id was the smaller one, subtracted it otherwise.
        (sub_mod if client < peer else add_mod)(out, mask, bits)
    return out


def _colluder_shares(round_: HandDrivenRound, colluder: int, owner: int) -> tuple[int, int] | None:
    """The shares of ``owner``'s secrets a colluding client holds. The adversary holds a
    colluder's whole secret state by definition; the session keeps it in ``_held``."""
    held = getattr(round_.clients[colluder], "_held", {})
    return held.get(owner)


def forged_dropout(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                   threshold: int | None = None, colluders: Iterable[int] = (), target: int | None = None,
                   inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """Run attack (b) against ``target`` (default: the first client that does not collude)."""
    started = time.perf_counter()
    bad = frozenset(int(c) for c in colluders)
    target = min(set(setting.client_ids) - bad) if target is None else target
    if target in bad:
        raise ValueError("the target cannot collude with the server")
    config = SecAgg(security=security, threshold=threshold)
    models = {cid: setting.honest for cid in setting.client_ids}
    updates, digests, spec = client_updates(models, setting.data, lr=setting.lr)
    round_ = HandDrivenRound(config, updates, digests, round_id=round_id)
    params = round_.server.params
    t, q = params.threshold, params.signatures_needed
    n = setting.clients
    label = f"forged dropout (t={t} of {n}" + (f", {len(bad)} colluding" if bad else "") + ")"
    common = dict(attack=label, security=security, clients=n, threshold=t, targets=(target,))

    next_stage = CONSISTENCY if config.active else UNMASK
    if not round_.run_until(next_stage):
        return MaliciousOutcome(**common, completed=False, refusals=dict(round_.refusals), aborted=round_.aborted,
                                recovery=None, summary="the round ended before the unmasking could be forged",
                                seconds=time.perf_counter() - started)
    full = tuple(sorted(round_.server.view.by_sender(MASKED)))
    without = tuple(c for c in full if c != target)
    honest = [c for c in without if c not in bad]
    told_survived = honest[:max(max(t, q) - 1 - len(bad), 0)]  # plus the target itself
    told_dropped = honest[len(told_survived):]
    groups = {full: [target, *told_survived], without: told_dropped}
    round_.server.messages_to_send()  # the honest requests are never sent

    signatures: dict[tuple[int, ...], dict[int, bytes]] = {full: {}, without: {}}
    if config.active:
        assert config.identities is not None
        for survivors, members in groups.items():
            replies = round_.exchange({c: ConsistencyRequest(round_id, SERVER_ID, c, survivors) for c in members})
            signatures[survivors] = {c: r.signature for c, r in replies.items()}  # type: ignore[attr-defined]
            for c in bad:  # the adversary signs for its accomplices, both sets
                # (with the colluder's own view of the session, which the adversary holds)
                signatures[survivors][c] = config.identities.signing_key(c).sign(
                    survivors_payload(round_.clients[c]._session, survivors))

    seed_shares: dict[int, int] = {}
    key_shares: dict[int, int] = {}
    for survivors, members in groups.items():
        replies = round_.exchange({c: UnmaskRequest(round_id, SERVER_ID, c, survivors, signatures[survivors])
                                   for c in members})
        for c, reply in replies.items():
            x = params.x_coordinate(c)
            if target in reply.seed_shares:  # type: ignore[attr-defined]
                seed_shares[x] = share_from_bytes(reply.seed_shares[target])  # type: ignore[attr-defined]
            if target in reply.key_shares:  # type: ignore[attr-defined]
                key_shares[x] = share_from_bytes(reply.key_shares[target])  # type: ignore[attr-defined]
    for c in bad:
        held = _colluder_shares(round_, c, target)
        if held is not None:
            seed_shares[params.x_coordinate(c)], key_shares[params.x_coordinate(c)] = held

    refusals = dict(round_.refusals)
    got = f"{len(seed_shares)} shares of its self-mask seed and {len(key_shares)} of its mask key, {t} needed of each"
    if len(seed_shares) < t or len(key_shares) < t:
        caught = f"detected: {len(refusals)} clients refused ({next(iter(refusals.values()))}); " if refusals else ""
        blocked = "" if refusals else "not possible: "
        return MaliciousOutcome(**common, completed=False, refusals=refusals, aborted=None, recovery=None,
                                seconds=time.perf_counter() - started,
                                summary=f"{caught}{blocked}the server got {got}; client {target} stays masked")

    view = round_.server.view
    advertised = view.by_sender(ADVERTISE)
    mask_key = reconstruct_secret(key_shares, t)
    if kx.public_bytes(kx.private_from_bytes(mask_key)) != advertised[target].mask_pk:  # type: ignore[attr-defined]
        raise RuntimeError("the rebuilt mask key does not match the target's public key (inconsistent shares)")
    self_seed = reconstruct_secret(seed_shares, t)
    peers = {p: advertised[p].mask_pk for p in round_.server.mutual[target]}  # type: ignore[attr-defined]
    encoded = unmask_individual(view.by_sender(MASKED)[target].vector, self_seed, mask_key,  # type: ignore[attr-defined]
                                client=target, peers=peers, session=round_.server.header, bits=config.encoding.bits)
    update = config.encoding.decode(encoded, clients=1)
    error = update_error(update, config.encoding.quantize(updates[target]))
    recovery = invert_update(setting, spec, update, target, inversion=inversion)
    how = (f"{len(refusals)} clients refused, but too few to stop it" if refusals else "not detected")
    if config.active:
        how += (f" (the survivor sets gathered {len(signatures[full])} and {len(signatures[without])} "
                f"signatures, {q} needed" + (": the colluders signed both)" if bad else ")"))
    return MaliciousOutcome(
        **common, completed=True, refusals=refusals, aborted=None, recovery=recovery, update_error=error,
        seconds=time.perf_counter() - started,
        summary=(f"{how}: the server got {got}, unmasked client {target}'s individual update (max error "
                 f"{error:.1e}) and iDLG recovered {recovery.recovered} of {len(recovery.truth)} of its images "
                 f"(mean PSNR {recovery.mean_psnr_db:.1f} dB)"))

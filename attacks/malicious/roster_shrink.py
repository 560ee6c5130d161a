"""Roster shrink: the server announces a round of its target and its accomplices only.

In a roster of the target alone, ``t = 1`` and the target's own share is its seed; in a roster
of the target and ``c`` colluders the server learns the target's input from the sum (the
colluders know theirs), and when ``c >= t`` the colluders hold ``t`` shares of both of its
secrets as well. A client that takes the roster on the server's word is lost.

Protocol v2 clients derive every parameter from their own configuration and accept a roster
only within ``[min_clients, max_clients]``; with active security ``min_clients`` defaults to
the whole configured :class:`~privagg.identity.Roster`, so no client can be left out.
Semi-honest clients accept any roster of at least two (the honest-but-curious server is
trusted to announce the round honestly), and a configuration that lowers ``min_clients`` lets
the server pick who is in the round (and so pack it with colluders), whatever the security.

:func:`shrink` announces the shrunk round to the real client sessions of its members and, when
they go along, rebuilds the target's input from what the colluders hold and the target's own
unmasking answer (no unmasking of anybody else is needed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.forge import Forge
from attacks.malicious.harness import client_updates
from attacks.malicious.isolated import invert_update, update_error
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg.errors import ConfigurationError, InsecureParameters
from privagg.identity import Identities
from secagg import SecAgg
from secagg.graph import default_threshold
from secagg.round import RoundParameters

__all__ = ["ShrinkResult", "shrink", "roster_shrink"]


@dataclass(frozen=True, eq=False)
class ShrinkResult:
    """``encoded``: the target's encoded input, or ``None``; ``refusals``: session label -> error."""

    encoded: npt.NDArray[np.unsignedinteger] | None
    forge: Forge
    target: int
    roster: tuple[int, ...]
    seed_shares: int
    key_shares: int
    refusals: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.encoded is not None and bool(np.array_equal(self.encoded, self.forge.encoded(self.target)))


def shrink(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int, colluders: Iterable[int] = (),
           digests: Mapping[int, bytes] | None = None, round_id: int = 0, **announce: object) -> ShrinkResult:
    """Announce the round of ``target`` and ``colluders`` alone (``announce`` overrides what the
    server claims, e.g. ``threshold=1``) and take the target's input if its session goes along."""
    roster = tuple(sorted({int(target), *(int(c) for c in colluders)}))
    subset = {c: updates[c] for c in roster}
    try:
        params = config.parameters(roster, int(np.asarray(updates[target]).size))
    except (ConfigurationError, InsecureParameters):
        # Parameters this configuration would not allow: the server announces them anyway
        # (the complete graph and the largest threshold it has, down to one share of one).
        n = len(roster)
        t = min(config.threshold or default_threshold(n - 1), n)
        params = RoundParameters(roster, n - 1, t, max(t, 2 * n // 3 + 1) if config.active else 0,
                                 int(np.asarray(updates[target]).size), config.encoding.bits, config.active)
    forge = Forge(config, subset, roster=roster, round_id=round_id, params=params,
                  digests={c: (digests or {}).get(c, bytes(32)) for c in roster})
    sessions = {c: forge.session(c) for c in roster}
    group = list(sessions.values())
    for s in group:
        forge.advertise(s, **announce)
    t_sess = sessions[target]
    helpers = [sessions[c] for c in roster if c != target]
    if t_sess.refused is None:
        graph = forge.commit_graph(group)
        forge.share_honestly(group, group, graph)
        forge.mask_honestly(group, group)
        if forge.params.active:
            forge.consistency(t_sess, roster)
            signatures = {t_sess.cid: t_sess.signature} if t_sess.signature else {}
            signatures.update({c.cid: forge.colluder_signature(c, roster) for c in helpers})
            forge.unmask(t_sess, roster, signatures)
        else:
            forge.unmask(t_sess, roster)
    encoded, seeds, keys = forge.expose(t_sess, helpers, [t_sess])
    return ShrinkResult(encoded, forge, target, roster, seeds, keys, forge.refusals)


def roster_shrink(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                  colluders: Iterable[int] = (), target: int | None = None, min_clients: int | None = None,
                  inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """Shrink the setting's round to ``target`` and ``colluders``; every client is configured for
    the whole setting (active: a roster of all of them)."""
    started = time.perf_counter()
    bad = tuple(sorted(int(c) for c in colluders))
    ids = setting.client_ids
    target = min(set(ids) - set(bad)) if target is None else target
    identities = Identities(ids) if security == "active" else None
    config = SecAgg(security=security, identities=identities, min_clients=min_clients)
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    result = shrink(config, updates, target=target, colluders=bad, digests=digests, round_id=round_id)
    n = len(result.roster)
    label = f"roster shrink ({n} of {len(ids)}: the target and {len(bad)} colluders)"
    common = dict(attack=label, security=security, clients=len(ids), threshold=result.forge.params.threshold,
                  targets=(target,), refusals=dict(result.refusals), aborted=None)
    low = config.roster_bounds()[0]
    if result.encoded is None:
        why = (f"detected: the clients refuse a roster of {n} (this configuration takes {low} to "
               f"{config.roster_bounds()[1]})" if result.refusals else
               f"not possible: the server got {result.seed_shares} seed and {result.key_shares} key shares")
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=why)
    update = config.encoding.decode(result.encoded, clients=1)
    recovery = invert_update(setting, spec, update, target, inversion=inversion)
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
        update_error=update_error(update, config.encoding.quantize(updates[target])),
        summary=(f"not detected: the clients accept a roster of {n} (this configuration takes {low} or more); "
                 f"the target's own seed share and the colluders' shares unmask client {target}'s update and "
                 f"iDLG recovered {recovery.recovered} of {len(recovery.truth)} of its images (mean PSNR "
                 f"{recovery.mean_psnr_db:.1f} dB)"))

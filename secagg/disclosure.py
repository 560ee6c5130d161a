"""What an adversary learns from a secure-aggregation server view.

The honest-but-curious server sees masked vectors (uniform on their own) and learns only the
sum of the survivors. A server colluding with clients also knows the colluders' inputs, so it
learns the sum of the honest survivors: the aggregate minus the colluders' own updates. An
outsider sees the released aggregate.

That is not all colluders can learn in a sparse graph. From the realised graph (the view
keeps who sent shares to whom, and the round's facts name ``k``, ``t`` and the graph seed) an
honest client is *exposed* when

* colluders hold at least ``t`` of its shares (they rebuild its self-mask seed and its mask
  key, and with them strip every mask off its masked input), or
* it survived while every honest peer it masked with dropped after sharing (the server
  rebuilt their mask keys; the colluders know their own pairwise masks), or
* it is the only honest survivor (the honest sum is its update).

The last case is computed from the view; the first two need the colluders' shares, which the
view does not hold: those clients are listed in ``Disclosure.exposed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from privagg.interface import ServerView
from privagg.threats import Disclosure, PartialSum, ThreatModel
from secagg.round import SHARE

if TYPE_CHECKING:
    from secagg.config import SecAgg

__all__ = ["disclose", "exposed_clients"]


def exposed_clients(view: ServerView, colluders: frozenset[int]) -> tuple[int, ...]:
    """The honest clients whose individual input ``colluders`` (with the server) can unmask,
    from who exchanged shares with whom in ``view`` and its threshold."""
    if not colluders or "threshold" not in view.facts:
        return ()
    t = int(view.facts["threshold"])
    sent = {cid: set(msg.shares) for cid, msg in view.by_sender(SHARE).items()}  # type: ignore[attr-defined]
    included = set(view.included)
    exposed = []
    for cid in sorted(sent):
        if cid in colluders:
            continue
        mutual = {peer for peer in sent[cid] if cid in sent.get(peer, ())}
        holders = mutual & colluders
        honest_peers = mutual - colluders
        if len(holders) >= t:
            exposed.append(cid)
        elif cid in included and honest_peers and not honest_peers & included:
            exposed.append(cid)
    return tuple(exposed)


def disclose(config: SecAgg, view: ServerView, threat: ThreatModel) -> Disclosure:
    total = view.output if view.output is not None else np.zeros(0)
    released = PartialSum(view.included, total)
    if not threat.sees_server_view:
        return Disclosure(threat, {}, (released,), "only the released aggregate")
    colluders = frozenset(threat.colluders) & set(view.client_ids)
    exposed = exposed_clients(view, colluders)
    colluders_in = colluders & set(view.included)
    if not colluders:
        return Disclosure(threat, {}, (released,),
                          f"only the sum of the {len(view.included)} surviving clients; masked inputs are uniform")
    honest = tuple(c for c in view.included if c not in colluders_in)
    if exposed:
        summary = (f"the individual updates of {len(exposed)} honest client(s) {list(exposed)[:8]}, whose shares "
                   f"or masking peers the colluders control in the realised graph; and the sum of the "
                   f"{len(honest)} honest survivors")
    elif len(honest) == 1:
        summary = f"the individual update of client {honest[0]}, the only honest survivor"
    else:
        summary = (f"the sum of the {len(honest)} honest survivors (the aggregate minus the "
                   f"{len(colluders_in)} colluders' own inputs); no honest client's individual update")
    known = threat.known_inputs
    if known is None:
        return Disclosure(threat, {}, (released,), summary + " (give the colluders' inputs to compute it)",
                          exposed=exposed)
    # What colluders contributed is what the encoding made of their inputs.
    own = {c: config.fixed_point.quantize(known[c]) for c in colluders_in}
    honest_sum = total - np.sum([own[c] for c in sorted(colluders_in)], axis=0) if own else total
    individual = dict(own)
    if len(honest) == 1:
        individual[honest[0]] = honest_sum
    return Disclosure(threat, individual, (released, PartialSum(honest, honest_sum)), summary, exposed=exposed)

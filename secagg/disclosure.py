"""What an adversary learns from a secure-aggregation server view.

The honest-but-curious server sees masked vectors (uniform on their own) and learns only the
sum of the survivors. A server colluding with clients also knows the colluders' inputs, so it
learns the sum of the honest survivors: the aggregate minus the colluders' own updates. An
outsider sees the released aggregate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from privagg.interface import ServerView
from privagg.threats import Disclosure, PartialSum, ThreatModel

if TYPE_CHECKING:
    from secagg.config import SecAgg

__all__ = ["disclose"]


def disclose(config: SecAgg, view: ServerView, threat: ThreatModel) -> Disclosure:
    total = view.output if view.output is not None else np.zeros(0)
    released = PartialSum(view.included, total)
    if not threat.sees_server_view:
        return Disclosure(threat, {}, (released,), "only the released aggregate")
    colluders = threat.colluders & set(view.included)
    if not colluders:
        return Disclosure(threat, {}, (released,),
                          f"only the sum of the {len(view.included)} surviving clients; masked inputs are uniform")
    honest = tuple(c for c in view.included if c not in colluders)
    summary = (f"the sum of the {len(honest)} honest survivors (the aggregate minus the "
               f"{len(colluders)} colluders' own inputs); no honest client's individual update")
    known = threat.known_inputs
    if known is None:
        return Disclosure(threat, {}, (released,), summary + " (give the colluders' inputs to compute it)")
    # What colluders contributed is what the encoding made of their inputs.
    own = {c: config.fixed_point.quantize(known[c]) for c in colluders}
    honest_sum = total - np.sum([own[c] for c in sorted(colluders)], axis=0)
    return Disclosure(threat, own, (released, PartialSum(honest, honest_sum)), summary)

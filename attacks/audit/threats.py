"""The three adversaries every mode is audited against, as :mod:`privagg.threats` values.

* the honest-but-curious server (:data:`privagg.HONEST_BUT_CURIOUS`): all it received;
* the server colluding with some clients (:func:`privagg.colluding`): also their inputs and
  secrets. The colluders' inputs are round-specific, so the value is built per round from the
  vectors those clients handed to the aggregator;
* the outsider (:data:`privagg.OUTSIDER`): only the released model.

What each of them can compute from a given round is the mode's business
(:meth:`privagg.Aggregator.disclose`); nothing here knows any mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from attacks.training import RoundRecord
from privagg import HONEST_BUT_CURIOUS, OUTSIDER, ThreatModel, colluding

__all__ = ["THREAT_KINDS", "threat_models", "threat_names"]

THREAT_KINDS = ("honest-but-curious", "colluding", "outsider")


def threat_models(record: RoundRecord, colluders: Sequence[int]) -> dict[str, ThreatModel]:
    """The audit's adversaries for one round, keyed by :data:`THREAT_KINDS` (the colluding one
    is left out when ``colluders`` is empty or none of them took part in the round)."""
    out = {"honest-but-curious": HONEST_BUT_CURIOUS}
    present = [c for c in colluders if c in record.participants]
    if present:
        inputs = None if record.sent is None else {c: record.sent[c] for c in present}
        out["colluding"] = colluding(present, inputs)
    out["outsider"] = OUTSIDER
    return out


def threat_names(colluders: Sequence[int]) -> dict[str, str]:
    """The names :func:`threat_models` gives its adversaries when every colluder takes part."""
    names = {"honest-but-curious": HONEST_BUT_CURIOUS.name}
    if colluders:
        names["colluding"] = colluding(colluders).name
    names["outsider"] = OUTSIDER.name
    return names

"""The difference of two sessions of one round: no colluder, no forged message.

The server runs a round to the end and keeps the aggregate, then runs the *same* round again
(same round id, same model, so every client sends the same update) and lets its target "drop"
before its masked input. Both sessions are the real server session, honest throughout; a
dropout is what secure aggregation is built to tolerate. The difference of the two aggregates is
the target's update, exactly as encoded.

Nothing in a session remembers an earlier one: a client configured with ``SecAgg`` answers every
session it is given, and the Flower client mod starts a new session for every first-stage
request, whatever its round id. A restart after a genuine abort looks the same to a client
(and the server can always claim one: clients cannot tell whether it unmasked). What would stop
it is client-side state across sessions: one unmasking answer per round id (or per model).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.harness import HandDrivenRound, client_updates
from attacks.malicious.isolated import invert_update, update_error
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg import AggregationAborted
from privagg.encoding import sub_mod
from privagg.identity import Identities
from secagg import SecAgg
from secagg.round import MASKED

__all__ = ["DifferenceResult", "two_sessions", "session_difference"]


@dataclass(frozen=True, eq=False)
class DifferenceResult:
    encoded: npt.NDArray[np.unsignedinteger] | None
    truth: npt.NDArray[np.unsignedinteger]
    first: tuple[int, ...]
    second: tuple[int, ...]
    aborted: str | None
    refusals: dict[int, str]

    @property
    def exact(self) -> bool:
        return self.encoded is not None and bool(np.array_equal(self.encoded, self.truth))


def two_sessions(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int,
                 digests: Mapping[int, bytes] | None = None, round_id: int = 0) -> DifferenceResult:
    """Run the round twice with the real server session; ``target`` drops in the second."""
    digests = dict(digests) if digests is not None else {c: bytes(32) for c in updates}
    first = HandDrivenRound(config, updates, digests, round_id=round_id)
    full = first.run()
    second = HandDrivenRound(config, updates, digests, round_id=round_id)
    refusals = dict(first.refusals)
    truth = config.encoding.encode(np.asarray(updates[target], dtype=np.float64))
    if full is None or not second.run_until(MASKED):
        return DifferenceResult(None, truth, () if full is None else full.included, (),
                                first.aborted or second.aborted, refusals)
    requests = second.server.messages_to_send()
    requests.pop(target, None)  # the target "drops" before its masked input
    for cid, reply in second.exchange(requests).items():
        second.server.receive(cid, reply.to_bytes())
    try:
        second.server.deadline_passed()
    except AggregationAborted as exc:  # recorded, as the harness does
        second.aborted = str(exc)
    without = second.run()
    refusals.update(second.refusals)
    if without is None or full.encoded is None or without.encoded is None:
        return DifferenceResult(None, truth, full.included, (), second.aborted, refusals)
    if set(full.included) - set(without.included) != {target}:
        return DifferenceResult(None, truth, full.included, without.included, None, refusals)
    difference = full.encoded.copy()
    sub_mod(difference, without.encoded, config.encoding.bits)
    return DifferenceResult(difference, truth, full.included, without.included, None, refusals)


def session_difference(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                       neighbours: int | Literal["all", "auto"] = "all", target: int | None = None,
                       inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """The difference attack in ``setting`` against ``target`` (default: the first client)."""
    started = time.perf_counter()
    ids = setting.client_ids
    target = ids[0] if target is None else target
    config = SecAgg(security=security, neighbours=neighbours,
                    identities=Identities(ids) if security == "active" else None)
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    result = two_sessions(config, updates, target=target, digests=digests, round_id=round_id)
    t = config.parameters(ids, 1).threshold
    common = dict(attack="difference of two sessions of one round", security=security, clients=len(ids),
                  threshold=t, targets=(target,), refusals=dict(result.refusals), aborted=result.aborted)
    if result.encoded is None:
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=f"not possible: the second session ended with {result.second or 'nothing'}")
    update = config.encoding.decode(result.encoded, clients=1)
    recovery = invert_update(setting, spec, update, target, inversion=inversion)
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
        update_error=update_error(update, config.encoding.quantize(updates[target])),
        summary=(f"not detected: the round ran twice under round id {round_id} (honest server code, no colluder), "
                 f"client {target} 'dropped' in the second; the difference of the two aggregates is its update "
                 f"and iDLG recovered {recovery.recovered} of {len(recovery.truth)} of its images (mean PSNR "
                 f"{recovery.mean_psnr_db:.1f} dB)"))

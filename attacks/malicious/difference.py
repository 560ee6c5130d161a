"""The difference of two sessions of one round: no colluder, no forged message.

The server runs a round to the end and keeps the aggregate, then runs the *same* round again
(same round id, same model, so every client sends the same update) and lets its target "drop"
before its masked input. Both sessions are the real server session, honest throughout; a
dropout is what secure aggregation is built to tolerate. The difference of the two aggregates is
the target's update, exactly as encoded.

Stopped by :class:`privagg.ledger.ContributionLedger` (v2): a client claims the hash of its
encoded update before its masked input leaves, once whatever the round id, the model digest or
the session, so in the second session every other client refuses to send a masked input and the
second aggregate never exists.

What :func:`two_sessions` lets the server vary, and what the ledger does with it:

* ``second_round_id`` (the same model as "round 6"), and :func:`signed_zeros` (the zero weights
  sent as ``-0.0``: another digest, bit-identical updates): both were ways past the ledger v1
  (keyed on the digest or the round id); the ledger v2 keys on the encoded update itself, so
  both are refused;
* :func:`nudged` moves every weight by one float32 ulp: the clients' updates move by far less
  than one fixed-point step, but a few encoded values do change (measured in the digits setting
  of 8 clients: 30 of 7,210 values one step off), so the encoded update hashes to another key
  and the ledger lets it through; the difference is the target's encoded update up to one step
  on those few values (error 9.5e-7, both images recovered at 118 dB, active or not). This is
  the ledger's documented limit: only noise (differential privacy) bounds it
  (:func:`session_difference` with ``nudge=True`` measures it).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

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

__all__ = ["DifferenceResult", "LEDGER_REFUSAL", "two_sessions", "session_difference", "nudged", "signed_zeros"]

#: What a client's ledger says when asked for a second masked input of the same update.
LEDGER_REFUSAL = "already put this input into a sum"


def signed_zeros(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every zero weight sent as ``-0.0``: the same model value for value
    (every update is bit for bit the same), another digest (the digest hashes the float bytes)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for weight in out.parameters():
            weight.copy_(torch.where(weight == 0, torch.full_like(weight, -0.0), weight))
    return out


def nudged(model: nn.Module, ulps: int = 1) -> nn.Module:
    """A copy of ``model`` with *every* trainable weight moved up by ``ulps`` float32 ulps: another
    model digest, the same model for every practical purpose."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for weight in out.parameters():
            if weight.requires_grad:
                for _ in range(ulps):
                    weight.copy_(torch.nextafter(weight, torch.full_like(weight, float("inf"))))
    return out


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
                 digests: Mapping[int, bytes] | None = None, round_id: int = 0,
                 second_round_id: int | None = None, second_updates: Mapping[int, npt.ArrayLike] | None = None,
                 second_digests: Mapping[int, bytes] | None = None) -> DifferenceResult:
    """Run the round twice with the real server session; ``target`` drops in the second. The
    second session may be announced under another round id, and run on other updates (those of
    another model, with their digests). ``encoded`` is the difference of the two aggregates
    (``exact`` compares it with the target's first-session update)."""
    digests = dict(digests) if digests is not None else {c: bytes(32) for c in updates}
    first = HandDrivenRound(config, updates, digests, round_id=round_id)
    full = first.run()
    second = HandDrivenRound(config, second_updates if second_updates is not None else updates,
                             dict(second_digests) if second_digests is not None else digests,
                             round_id=round_id if second_round_id is None else second_round_id)
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
                       inversion: InversionConfig | None = None, round_id: int = 0,
                       nudge: bool = False, zeros: bool = False,
                       rounding: Literal["deterministic", "stochastic"] = "deterministic") -> MaliciousOutcome:
    """The difference attack in ``setting`` against ``target`` (default: the first client): every
    client keeps one ledger across the two sessions (one configuration, as one client process
    would). ``nudge``: the second session runs on :func:`nudged` (a one-ulp change: a new digest);
    ``zeros``: on :func:`signed_zeros` (no change at all: a new digest). ``rounding``: the
    clients' fixed-point rounding; ``"stochastic"`` encodes the same update to other integers in
    each session, so the ledger (keyed on the encoded input) sees a new input each time."""
    started = time.perf_counter()
    ids = setting.client_ids
    target = ids[0] if target is None else target
    config = SecAgg(security=security, neighbours=neighbours, rounding=rounding,
                    identities=Identities(ids) if security == "active" else None)
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    second_updates = second_digests = None
    if nudge or zeros:
        changed = nudged(setting.honest) if nudge else signed_zeros(setting.honest)
        second_updates, second_digests, _ = client_updates({c: changed for c in ids}, setting.data, lr=setting.lr)
    result = two_sessions(config, updates, target=target, digests=digests, round_id=round_id,
                          second_updates=second_updates, second_digests=second_digests)
    t = config.parameters(ids, 1).threshold
    label = "difference of two sessions" + (" (one-ulp model change)" if nudge else
                                            " (zeros sent as -0.0)" if zeros else " of one round")
    if rounding == "stochastic":
        label += ", stochastic rounding"
    common = dict(attack=label, security=security, clients=len(ids),
                  threshold=t, targets=(target,), refusals=dict(result.refusals), aborted=result.aborted)
    if result.encoded is None:
        ledger = [c for c, e in result.refusals.items() if LEDGER_REFUSAL in e]
        why = (f"detected: in the second session {len(ledger)} clients refused to send a masked input of an "
               f"update they had already put into a sum (privagg.ledger: once per encoded input, whatever the "
               f"round id or digest), so there is no second aggregate"
               if ledger else f"not possible: the second session ended with {result.second or 'nothing'}")
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=why)
    update = config.encoding.decode(result.encoded, clients=1)
    truth = config.encoding.quantize(updates[target])
    steps = np.abs(result.encoded.astype(np.int64) - result.truth.astype(np.int64))
    steps = np.minimum(steps, (1 << config.encoding.bits) - steps)
    recovery = invert_update(setting, spec, update, target, inversion=inversion)
    how = (f"the second session ran on the model with every weight moved by one float32 ulp (a few encoded "
           f"values change, so the ledger sees a new input and lets it through: its documented limit); the "
           f"difference is client {target}'s update up to "
           f"{int(steps.max())} fixed-point steps on {int((steps > 0).sum())} of {steps.size} values" if nudge else
           f"the second session ran on the same model with its zero weights sent as -0.0 (a new digest, so the "
           f"ledger lets it through, and bit-identical updates); the difference is client {target}'s update, "
           f"{int((steps > 0).sum())} of {steps.size} values off" if zeros else
           f"the round ran twice under round id {round_id} on the same model with stochastic rounding: every "
           f"client's update encoded to other integers, so the ledger saw new inputs; client {target} 'dropped' in "
           f"the second and the difference is its update up to {int(steps.max())} steps of the others' rounding "
           f"noise" if rounding == "stochastic" else
           f"the round ran twice under round id {round_id} (honest server code, no colluder), client {target} "
           f"'dropped' in the second; the difference of the two aggregates is its update")
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
        update_error=update_error(update, truth),
        extra={"steps_off": int((steps > 0).sum()), "max_steps": int(steps.max()), "values": int(steps.size)},
        summary=(f"not detected: {how}; iDLG recovered {recovery.recovered} of {len(recovery.truth)} of its images "
                 f"(mean PSNR {recovery.mean_psnr_db:.1f} dB)"))

"""The difference of two sessions split between two unmasking groups: stopped by the ledger v2.

Against the ledger v1 (a client claimed its contribution only when it *answered an unmasking
request*, once per model) the server, with the honest server code and the same model:

1. runs session 1 to the end with every client, the target ``T`` included, but asks only a group
   ``A`` (``T``, some honest clients and the colluders ``C``) to unmask: ``|A| >= t`` seed shares
   of every client, the full aggregate; the other honest clients ``B`` signed (active) and were
   never asked: their ledger recorded nothing;
2. runs session 2 of the same round (same round id and model), ``T`` "drops" before its masked
   input, every other client signs the survivor set, and only ``B`` and ``C`` are asked to
   unmask: ``|B| + |C| >= t`` seed shares of every survivor and key shares of ``T``;
3. the difference of the two aggregates is ``T``'s input, exactly.

It needed ``|C| >= 2t - n`` colluders (2 at any even ``n``), far below ``n / 3``. The ledger v2
claims the encoded update *before the masked input leaves*: in session 2 every honest client
(in ``A`` or ``B``) has already put this update into session 1's sum and refuses to send a masked
input, so session 2 has only the colluders' masked inputs and aborts below the threshold.
Colluders still answer in both sessions (a malicious client keeps no ledger: fresh ones here).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.difference import LEDGER_REFUSAL
from attacks.malicious.harness import HandDrivenRound, client_updates
from attacks.malicious.isolated import invert_update, update_error
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting
from privagg import AggregationAborted, AggregationResult
from privagg.encoding import sub_mod
from privagg.identity import Identities
from privagg.ledger import ContributionLedger
from secagg import SecAgg
from secagg.round import MASKED, UNMASK

__all__ = ["UnmaskSplitResult", "split_unmasking", "needed_colluders", "unmasking_split"]


def needed_colluders(config: SecAgg, n: int) -> int:
    """``2t - n``: the fewest colluders the split of the unmasking needs (complete graph)."""
    return max(2 * config.parameters(range(1, n + 1), 1).threshold - n, 0)


@dataclass(frozen=True, eq=False)
class UnmaskSplitResult:
    encoded: npt.NDArray[np.unsignedinteger] | None
    truth: npt.NDArray[np.unsignedinteger]
    first_group: tuple[int, ...]
    second_group: tuple[int, ...]
    first: tuple[int, ...]
    second: tuple[int, ...]
    refusals: dict[int, str]
    aborted: str | None

    @property
    def exact(self) -> bool:
        return self.encoded is not None and bool(np.array_equal(self.encoded, self.truth))


def _finish(run: HandDrivenRound, unmaskers: set[int]) -> AggregationResult | None:
    """Run to the unmasking, ask only ``unmaskers``, then let the deadline pass."""
    if not run.run_until(UNMASK):
        return None
    requests = {c: m for c, m in run.server.messages_to_send().items() if c in unmaskers}
    for cid, reply in run.exchange(requests).items():
        run.server.receive(cid, reply.to_bytes())
    try:
        run.server.deadline_passed()
    except AggregationAborted as exc:
        run.aborted = str(exc)
    return run.run()


def _round(config: SecAgg, updates: Mapping[int, npt.ArrayLike], digests: Mapping[int, bytes],
           colluders: tuple[int, ...], round_id: int) -> HandDrivenRound:
    run = HandDrivenRound(config, updates, digests, round_id=round_id)
    # The adversary's clients: real sessions, each with a fresh ledger (a malicious client keeps none).
    for c in colluders:
        rogue = dataclasses.replace(config, ledger=ContributionLedger())
        run.clients[c] = rogue.client(c, updates[c], round_id=round_id, model_digest=digests[c])
    return run


def split_unmasking(config: SecAgg, updates: Mapping[int, npt.ArrayLike], *, target: int, colluders: Iterable[int],
                    digests: Mapping[int, bytes] | None = None, round_id: int = 0) -> UnmaskSplitResult:
    """The attack of the module docstring, with the real server session for both sessions. Honest
    clients share ``config`` (one ledger, as one process per client would keep); colluders run
    from copies with fresh ledgers (they ignore theirs)."""
    bad = tuple(sorted(int(c) for c in colluders))
    ids = tuple(sorted(updates))
    digests = dict(digests) if digests is not None else {c: bytes(32) for c in ids}
    t = config.parameters(ids, 1).threshold
    honest = [c for c in ids if c != target and c not in bad]
    a_honest = honest[:max(t - len(bad) - 1, 0)]
    first_group = tuple(sorted({target, *a_honest, *bad}))
    second_group = tuple(sorted({*honest[len(a_honest):], *bad}))
    truth = config.encoding.encode(np.asarray(updates[target], dtype=np.float64))
    one = _round(config, updates, digests, bad, round_id)
    full = _finish(one, set(first_group))
    two = _round(config, updates, digests, bad, round_id)
    refusals = dict(one.refusals)
    if full is None or not two.run_until(MASKED):
        return UnmaskSplitResult(None, truth, first_group, second_group, () if full is None else full.included, (),
                                 refusals, one.aborted or two.aborted)
    requests = two.server.messages_to_send()
    requests.pop(target, None)  # the target "drops" before its masked input
    for cid, reply in two.exchange(requests).items():
        two.server.receive(cid, reply.to_bytes())
    try:
        two.server.deadline_passed()
    except AggregationAborted as exc:
        two.aborted = str(exc)
    without = _finish(two, set(second_group))
    refusals.update(two.refusals)
    if without is None or set(full.included) - set(without.included) != {target}:
        return UnmaskSplitResult(None, truth, first_group, second_group, full.included,
                                 () if without is None else without.included, refusals, two.aborted)
    difference = full.encoded.copy()
    sub_mod(difference, without.encoded, config.encoding.bits)
    return UnmaskSplitResult(difference, truth, first_group, second_group, full.included, without.included,
                             refusals, None)


def unmasking_split(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                    colluders: Iterable[int] = (), target: int | None = None,
                    inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """The split of the unmasking over two sessions in ``setting`` (complete graph), scored by
    iDLG on the difference."""
    started = time.perf_counter()
    bad = tuple(sorted(int(c) for c in colluders))
    ids = setting.client_ids
    target = min(set(ids) - set(bad)) if target is None else target
    config = SecAgg(security=security, identities=Identities(ids) if security == "active" else None)
    updates, digests, spec = client_updates({c: setting.honest for c in ids}, setting.data, lr=setting.lr)
    result = split_unmasking(config, updates, target=target, colluders=bad, digests=digests, round_id=round_id)
    t = config.parameters(ids, 1).threshold
    need = needed_colluders(config, len(ids))
    common = dict(attack=f"difference split between two unmasking groups ({len(bad)} colluding)",
                  security=security, clients=len(ids), threshold=t, targets=(target,),
                  refusals=dict(result.refusals), aborted=result.aborted, extra={"minimum_colluders": need})
    if result.encoded is None:
        ledger = [c for c, e in result.refusals.items() if LEDGER_REFUSAL in e]
        if ledger:
            return MaliciousOutcome(
                **common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                summary=(f"detected: in session 2 {len(ledger)} honest clients refused to send a masked input of an "
                         f"update they had already put into session 1's sum (privagg.ledger), whichever group had "
                         f"unmasked, so session 2 ended with {result.aborted or 'no aggregate'}"))
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=(f"not possible: {result.aborted or 'no second aggregate'} (the split needs "
                                         f"2t - n = {need} colluders)"))
    update = config.encoding.decode(result.encoded, clients=1)
    recovery = invert_update(setting, spec, update, target, inversion=inversion)
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
        update_error=update_error(update, config.encoding.quantize(updates[target])),
        summary=(f"not detected: session 1 unmasked by {list(result.first_group)}, session 2 (same round and model, "
                 f"client {target} dropped) by {list(result.second_group)}: no honest client unmasked twice, so the "
                 f"ledger saw nothing; the difference is client {target}'s update and iDLG recovered "
                 f"{recovery.recovered} of {len(recovery.truth)} of its images (mean PSNR "
                 f"{recovery.mean_psnr_db:.1f} dB)"))

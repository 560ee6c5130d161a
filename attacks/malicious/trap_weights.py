"""Attack (c), trap weights: the server sends *everyone* the same crafted model, whose imprint
bins (:mod:`attacks.malicious.imprint`) let single inputs be read out of the aggregate.

Secure aggregation hides individual updates inside their sum, but the sum of the bins'
gradients is still binned: an image whose statistic falls alone into one bin, among all the
images of all the clients of the round, comes back exactly. With ``k`` bins and ``b`` images
about ``exp(-b/k)`` of them do (Fowl et al. 2022 report thousands of images per round from
aggregates of hundreds of users).

Nothing in the protocol can notice: every client receives, hashes and signs the same model, so
the model-consistency binding of ``security="active"`` is satisfied, and the round is an
honest round of an honest protocol on a dishonest model. What would help is outside secure
aggregation: clients that inspect the model they are given (identical rows, thresholds that
switch units on in sequence), a server that cannot choose the model (its parameters attested
or fixed by the clients), or differential privacy on the updates.
"""

from __future__ import annotations

import time
from typing import Literal

from attacks.malicious.harness import HandDrivenRound, client_updates
from attacks.malicious.imprint import recover_inputs
from attacks.malicious.outcome import MaliciousOutcome, score_recovery
from attacks.malicious.setting import Setting
from secagg import SecAgg

__all__ = ["trap_weights"]


def trap_weights(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                 neighbours: int | Literal["all", "auto"] = "all", round_id: int = 0) -> MaliciousOutcome:
    """Run attack (c): the armed model to every client, then read images out of the aggregate."""
    started = time.perf_counter()
    config = SecAgg(security=security, neighbours=neighbours)
    updates, digests, spec = client_updates({c: setting.armed for c in setting.client_ids}, setting.data,
                                            lr=setting.lr)
    round_ = HandDrivenRound(config, updates, digests, round_id=round_id)
    result = round_.run()
    common = dict(attack="trap weights (imprint)", security=security, clients=setting.clients,
                  threshold=round_.server.params.threshold, targets=setting.client_ids,
                  refusals=dict(round_.refusals), aborted=round_.aborted, detectable=False)
    total = sum(len(p) for p in setting.data.parts.values())
    if result is None:  # an honest round of honest clients does not abort; say so if it ever does
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=f"the round aborted ({round_.aborted})", extra={"images": total})
    candidates = recover_inputs(result.aggregate, spec, setting.layout, setting.dataset.input_shape,
                                tolerance=setting.tolerance(config))
    truth = setting.data.inputs(setting.client_ids)
    recovery = score_recovery(candidates, truth, data_range=setting.dataset.value_range)
    got = 0 if recovery is None else recovery.recovered
    quality = "" if recovery is None else f" (mean PSNR {recovery.mean_psnr_db:.1f} dB over all images)"
    check = ("every client signed for the same model, so the model binding of active security holds"
             if config.active else "every client trained on the same model")
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started, extra={"images": total},
        summary=(f"not detected, and not detectable by the protocol ({check}): {got} of {total} images of "
                 f"{setting.clients} clients read out of the aggregate's {setting.layout.bins} bins{quality}"))

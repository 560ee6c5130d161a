"""The yardstick for the malicious-server attacks: what the same server gets by following the
protocol (an honest-but-curious server).

Secure aggregation gives it the sum of every client's update and nothing else, so the best it
can do is gradient inversion on the aggregate: one reconstruction (iDLG, labels read from the
last layer) scored against the closest of all the clients' images. Each attack of
:mod:`attacks.malicious` is worth what it recovers *beyond* this.
"""

from __future__ import annotations

import time
from typing import Literal

from attacks.inversion.gradients import gradient_from_update
from attacks.inversion.reconstruct import InversionConfig, reconstruct
from attacks.malicious.harness import HandDrivenRound, client_updates
from attacks.malicious.outcome import MaliciousOutcome, score_recovery
from attacks.malicious.setting import Setting
from secagg import SecAgg

__all__ = ["honest_server"]


def honest_server(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                  inversion: InversionConfig | None = None, round_id: int = 0) -> MaliciousOutcome:
    """An honest round on the honest model, then iDLG for one image on the aggregate."""
    started = time.perf_counter()
    config = SecAgg(security=security)
    updates, digests, spec = client_updates({c: setting.honest for c in setting.client_ids}, setting.data,
                                            lr=setting.lr)
    round_ = HandDrivenRound(config, updates, digests, round_id=round_id)
    result = round_.run()
    common = dict(attack="no attack (honest-but-curious server)", security=security, clients=setting.clients,
                  threshold=round_.server.params.threshold, targets=setting.client_ids,
                  refusals=dict(round_.refusals), aborted=round_.aborted)
    if result is None:
        return MaliciousOutcome(**common, completed=False, recovery=None, seconds=time.perf_counter() - started,
                                summary=f"the round aborted ({round_.aborted})")
    gradient = gradient_from_update(result.aggregate, spec, setting.honest, lr=setting.lr,
                                    weight=len(result.included))
    found = reconstruct(setting.honest, gradient, method="idlg", input_shape=setting.dataset.input_shape,
                        n_classes=setting.dataset.n_classes, count=1, data_range=setting.dataset.data_range,
                        config=inversion)
    truth = setting.data.inputs(setting.client_ids)
    recovery = score_recovery(found.inputs, truth, data_range=setting.dataset.value_range)
    assert recovery is not None
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, seconds=time.perf_counter() - started,
        summary=(f"only the sum of {len(result.included)} updates: one image inverted from it matches its closest "
                 f"true image at {max(recovery.psnr_db):.1f} dB; {recovery.recovered} of {len(truth)} images "
                 f"recovered"))

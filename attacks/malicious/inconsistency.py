"""Attack (a), model inconsistency: the server sends its target a different model than everyone
else, one in which the target's update lands where nobody else's does.

Everyone but the target receives the honest model, whose trap units are disarmed: their
gradient is exactly zero, so every other client contributes exact zeros (encoded as 0) to the
trap coordinates. The target receives the same network with the traps armed
(:mod:`attacks.malicious.imprint`). Secure aggregation faithfully sums the updates, and on the
trap coordinates that sum *is* the target's individual update: the server reads it off the
aggregate and pulls the target's images out of the bins, however many clients the round has.

Against ``security="active"`` every client signs its keys together with the digest of the
model it trained on, and checks its peers' signatures against its *own* digest: the target's
signature does not verify for anyone else and theirs do not verify for the target. The others
leave the target out (a peer whose signature fails is refused alone), the target finds no peer
it can share with and refuses the round: the aggregate never contains its update.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from attacks.malicious.harness import HandDrivenRound, client_updates
from attacks.malicious.imprint import recover_inputs
from attacks.malicious.outcome import MaliciousOutcome, score_recovery
from attacks.malicious.setting import Setting
from privagg import unflatten
from secagg import SecAgg

__all__ = ["model_inconsistency"]


def _trap_coordinates(setting: Setting, spec: object, length: int) -> np.ndarray:
    """Positions of the trap units' parameters in the flat update."""
    probe = np.arange(length, dtype=np.float64)
    state = unflatten(probe, spec)  # type: ignore[arg-type]
    layout = setting.layout
    parts = [state[f"{layout.layer}.weight"][layout.units].reshape(-1), state[f"{layout.layer}.bias"][layout.units],
             state[f"{layout.head}.weight"][:, layout.units].reshape(-1)]
    return np.concatenate([p.numpy() for p in parts]).astype(np.int64)


def model_inconsistency(setting: Setting, *, security: Literal["semi-honest", "active"] = "semi-honest",
                        target: int | None = None, neighbours: int | Literal["all", "auto"] = "all",
                        round_id: int = 0) -> MaliciousOutcome:
    """Run attack (a) against ``target`` (default: the first client) and score what it recovers."""
    started = time.perf_counter()
    target = setting.client_ids[0] if target is None else target
    config = SecAgg(security=security, neighbours=neighbours)
    models = {cid: setting.armed if cid == target else setting.honest for cid in setting.client_ids}
    updates, digests, spec = client_updates(models, setting.data, lr=setting.lr)
    round_ = HandDrivenRound(config, updates, digests, round_id=round_id)
    result = round_.run()
    threshold = round_.server.params.threshold
    common = dict(attack="model inconsistency", security=security, clients=setting.clients, threshold=threshold,
                  targets=(target,), refusals=dict(round_.refusals), aborted=round_.aborted)
    if result is None:
        return MaliciousOutcome(
            **common, completed=False, recovery=None, seconds=time.perf_counter() - started,
            summary=(f"detected: {len(round_.refusals)} of {setting.clients} clients refused (the signatures of "
                     f"clients holding another model do not verify) and the round aborted; nothing was aggregated"))
    if target not in result.included:
        return MaliciousOutcome(
            **common, completed=False, recovery=None, seconds=time.perf_counter() - started,
            summary=(f"detected: client {target} refused (no peer signed for the model it received) and the "
                     f"others left it out; the aggregate of {len(result.included)} clients does not contain it"))
    traps = _trap_coordinates(setting, spec, len(result.aggregate))
    # The others contributed exact zeros there: the sum is the target's input as the encoding
    # made it (clipped, rounded), bit for bit.
    error = float(np.max(np.abs(result.aggregate[traps] - config.encoding.quantize(updates[target])[traps])))
    candidates = recover_inputs(result.aggregate, spec, setting.layout, setting.dataset.input_shape,
                                tolerance=setting.tolerance(config))
    recovery = score_recovery(candidates, setting.data.inputs([target]), data_range=setting.dataset.value_range)
    got = 0 if recovery is None else recovery.recovered
    quality = "" if recovery is None else f" (mean PSNR {recovery.mean_psnr_db:.1f} dB)"
    return MaliciousOutcome(
        **common, completed=True, recovery=recovery, update_error=error, seconds=time.perf_counter() - started,
        summary=(f"not detected: the aggregate of {len(result.included)} clients carries client {target}'s "
                 f"individual update on the trap coordinates (max error {error:.1e} against its encoded input); "
                 f"{got} of {len(setting.data.parts[target])} of its images recovered{quality}"))

"""Every malicious-server attack against semi-honest and against active secure aggregation, in
one setting: what ``security="active"`` buys, row by row, for the audit report.

Rows (each run for real, on the same clients and images):

* no attack: what an honest-but-curious server gets (the yardstick);
* (a) model inconsistency;
* (b) forged dropout three ways: with a threshold the split can reach (``t = n // 2``, allowed
  in semi-honest mode only), with the default threshold, and with the default threshold and
  ``colluders`` clients in league with the server;
* (c) trap weights (imprint), which no protocol check can see.

Active security always runs with its default threshold (it refuses ``t <= n/2``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.forged_dropout import forged_dropout
from attacks.malicious.honest import honest_server
from attacks.malicious.inconsistency import model_inconsistency
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.setting import Setting, make_setting
from attacks.malicious.trap_weights import trap_weights

__all__ = ["MaliciousRow", "MaliciousSuite", "run_malicious_suite"]


@dataclass(frozen=True, eq=False)
class MaliciousRow:
    """One attack, against semi-honest and against active secure aggregation."""

    attack: str
    semi_honest: MaliciousOutcome
    active: MaliciousOutcome
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "semi_honest": self.semi_honest.as_dict(), "active": self.active.as_dict(),
                "note": self.note}


@dataclass(frozen=True, eq=False)
class MaliciousSuite:
    """The rows, the setting they ran in, and how long it took."""

    rows: list[MaliciousRow]
    setting: Setting
    colluders: tuple[int, ...]
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config, "seconds": self.seconds, "rows": [r.as_dict() for r in self.rows]}


def run_malicious_suite(setting: Setting | None = None, *, clients: int = 8, images_per_client: int = 1,
                        colluders: int = 2, inversion: InversionConfig | None = None,
                        seed: int = 0) -> MaliciousSuite:
    """Run every row (see the module docstring); ``colluders``: how many clients (the highest ids)
    collude with the server in the last forged-dropout row (0 leaves the row out)."""
    started = time.perf_counter()
    setting = setting or make_setting("digits", clients=clients, images_per_client=images_per_client, seed=seed)
    n = setting.clients
    bad = tuple(setting.client_ids[n - colluders:]) if colluders else ()
    rows = [
        MaliciousRow("no attack (honest-but-curious server)", honest_server(setting, inversion=inversion),
                     honest_server(setting, security="active", inversion=inversion),
                     "the yardstick: gradient inversion on the aggregate"),
        MaliciousRow("(a) model inconsistency", model_inconsistency(setting),
                     model_inconsistency(setting, security="active"),
                     "a crafted model to one client; its update is alone on the trap coordinates"),
    ]
    active_split = forged_dropout(setting, security="active", inversion=inversion)
    rows.append(MaliciousRow("(b) forged dropout, low threshold",
                             forged_dropout(setting, threshold=max(n // 2, 2), inversion=inversion), active_split,
                             f"t = {max(n // 2, 2)} of {n} (semi-honest only: active security refuses t <= n/2)"))
    rows.append(MaliciousRow("(b) forged dropout, default threshold", forged_dropout(setting, inversion=inversion),
                             active_split, "each client answers one unmasking request, so the two groups are "
                                           "disjoint and need 2t <= n"))
    if bad:
        rows.append(MaliciousRow(f"(b) forged dropout, {len(bad)} colluding clients",
                                 forged_dropout(setting, colluders=bad, inversion=inversion),
                                 forged_dropout(setting, security="active", colluders=bad, inversion=inversion),
                                 f"clients {list(bad)} give the server both of their shares and sign both survivor "
                                 f"sets; the consistency check holds only while 2 * quorum > n + colluders"))
    rows.append(MaliciousRow("(c) trap weights (imprint)", trap_weights(setting),
                             trap_weights(setting, security="active"),
                             "the same crafted model to everyone: nothing for the protocol to detect"))
    config = {"dataset": setting.dataset.name, "clients": n, "images_per_client": len(setting.data.parts[1]),
              "bins": setting.layout.bins, "colluders": list(bad)}
    return MaliciousSuite(rows, setting, bad, time.perf_counter() - started, config)

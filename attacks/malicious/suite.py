"""Every malicious-server attack against semi-honest and against active secure aggregation, in
one setting: what ``security="active"`` buys, row by row, for the audit report.

Rows (each run for real, on the same clients and images):

* no attack: what an honest-but-curious server gets (the yardstick);
* (a) model inconsistency;
* (b) forged dropout three ways: with a threshold the split can reach (``t = n // 2``, allowed
  in semi-honest mode only), with the default threshold, and with the default threshold and
  ``colluders`` clients in league with the server;
* (c) trap weights (imprint), which no protocol check can see;
* (d) roster shrink: a round of the target and the colluders only;
* (e) replay: the old advertisements of peers whose mask keys an old session of the same round
  (same round id and nonce) gave the server;
* (f) graph-seed grinding (SecAgg+): a seed that puts ``t`` colluders next to the target
  (semi-honest: the server announces it; active: committed by every client, so the server can
  only tamper with reveals, which the target refuses, or restart);
* (g) neighbour omission (SecAgg+): ``t - 1`` colluding neighbours, the honest ones hidden from the
  target (key broadcast, share relay, survivor set);
* (h) forged dropout by second sessions: the consistency check split across two views of one
  round, each with its own quorum (worked against active security with ``q + t - n`` colluders;
  now refused: shares are bound to the session digest ``S``, so the second view's holders refuse
  the target's shares);
* (i) difference of two sessions: the same round run twice, the target dropped in the second
  (no colluder, the honest server code; refused in every mode by the clients' ledger v2, which
  claims the encoded update before the masked input leaves, whatever the round id or digest);
* (j) the same on a model changed by one float32 ulp per weight (a few encoded values change:
  a new input, so the ledger lets it through, and the difference is exact up to one fixed-point
  step on those values: the ledger's documented limit, only DP bounds it), and on the same model
  with its zero weights sent as ``-0.0`` (a new digest, bit-identical updates: now refused);
* (k) the difference split between two unmasking groups: each session unmasked by different
  honest clients plus the colluders (``2t - n`` colluders); got past the ledger v1 (claimed on
  unmasking), refused by v2 (the second session's honest clients send no masked input);
* (l) the plain difference (i) with ``rounding="stochastic"``: the same update encodes to other
  integers in each session, so the ledger, keyed on the encoded input, sees a new input.

Active security always runs with its default threshold (it refuses ``t <= n/2``). Rows (f) and
(g) need a sparse graph (three neighbours a client) and two colluders, row (h) at least ten
clients so that its colluders stay under a third: with fewer clients in the setting they run on
a setting of 8 (resp. 10) clients drawn the same way, and say so; without colluders, (f), (g)
(h) and (k) are left out ((i) and (j) need none). Each attack builds its own configurations, so
the clients' ledger spans that attack's sessions only (rows are independent deployments).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from attacks.inversion.reconstruct import InversionConfig
from attacks.malicious.difference import session_difference
from attacks.malicious.forged_dropout import forged_dropout
from attacks.malicious.graph_grinding import graph_grinding
from attacks.malicious.honest import honest_server
from attacks.malicious.inconsistency import model_inconsistency
from attacks.malicious.neighbour_omission import neighbour_omission
from attacks.malicious.outcome import MaliciousOutcome
from attacks.malicious.replay import replay
from attacks.malicious.roster_shrink import roster_shrink
from attacks.malicious.second_session import minimum_colluders, second_session_split
from attacks.malicious.setting import Setting, make_setting
from attacks.malicious.split_unmask import needed_colluders, unmasking_split
from attacks.malicious.trap_weights import trap_weights
from secagg import SecAgg

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
    rows += _v2_rows(setting, bad, inversion, seed)
    config = {"dataset": setting.dataset.name, "clients": n, "images_per_client": len(setting.data.parts[1]),
              "bins": setting.layout.bins, "colluders": list(bad)}
    return MaliciousSuite(rows, setting, bad, time.perf_counter() - started, config)


def _resized(setting: Setting, clients: int, seed: int) -> Setting:
    """``setting`` if it has at least ``clients`` clients, else one of ``clients`` drawn the same way."""
    if setting.clients >= clients:
        return setting
    return make_setting(setting.dataset, clients=clients, images_per_client=len(setting.data.parts[1]), seed=seed)


def _v2_rows(setting: Setting, bad: tuple[int, ...], inversion: InversionConfig | None,
             seed: int) -> list[MaliciousRow]:
    """Rows (d) to (i): the attacks on protocol v2 (:mod:`attacks.malicious.roster_shrink` and
    the modules after it)."""
    n = setting.clients
    rows = [
        MaliciousRow("(d) roster shrink", roster_shrink(setting, colluders=bad, inversion=inversion),
                     roster_shrink(setting, security="active", colluders=bad, inversion=inversion),
                     f"the server announces a round of the target and {len(bad)} colluders only; semi-honest "
                     f"clients take any roster of two or more, active ones only their whole configured roster"),
        MaliciousRow("(e) replay of old advertisements", replay(setting, colluders=bad),
                     replay(setting, security="active", colluders=bad),
                     "a new session of the same round (same round id and nonce) relays the old advertisements "
                     "of peers whose mask keys the old session gave the server"),
    ]
    difference = [MaliciousRow(
        "(i) difference of two sessions", session_difference(setting, inversion=inversion),
        session_difference(setting, security="active", inversion=inversion),
        "the same round twice (same round id and model, hence the same updates), the target dropped in the "
        "second: no colluder, the honest server code; refused by the clients' ledger (a masked input once per "
        "encoded update, whatever the round id or digest), in semi-honest mode too"), MaliciousRow(
        "(j) difference over a one-ulp model change", session_difference(setting, inversion=inversion, nudge=True),
        session_difference(setting, security="active", inversion=inversion, nudge=True),
        "the second session on the model with every weight moved by one float32 ulp: a few encoded values change, "
        "so the ledger sees a new input and lets it through, and the difference is exact but for those values, "
        "one step off (the ledger's documented limit: only DP noise bounds it)"), MaliciousRow(
        "(j) difference over zeros sent as -0.0", session_difference(setting, inversion=inversion, zeros=True),
        session_difference(setting, security="active", inversion=inversion, zeros=True),
        "no model change at all: the zero weights sent as -0.0 hash to another digest but give bit-identical "
        "updates, which the ledger v2 (keyed on the encoded update) refuses"), MaliciousRow(
        "(l) difference of two sessions with stochastic rounding",
        session_difference(setting, inversion=inversion, rounding="stochastic"),
        session_difference(setting, security="active", inversion=inversion, rounding="stochastic"),
        "rounding='stochastic' (a SecAgg option): the same update encodes to other integers in each session, so the "
        "ledger, keyed on the encoded input, lets the second session through; the difference is the target's update "
        "up to the other clients' rounding noise")]
    need_split = needed_colluders(SecAgg(), n)
    split_bad = bad[len(bad) - need_split:] if 0 < need_split <= len(bad) else ()
    if split_bad:
        difference.append(MaliciousRow(
            "(k) difference split between two unmasking groups",
            unmasking_split(setting, colluders=split_bad, inversion=inversion),
            unmasking_split(setting, security="active", colluders=split_bad, inversion=inversion),
            f"{len(split_bad)} colluders (2t - n) of {n}: session 1 unmasked by the target, some honest clients and "
            f"the colluders, session 2 (target dropped) by the other honest clients and the colluders; worked against "
            f"the ledger v1 (claimed on unmasking), refused by v2: no honest client sends session 2 a masked input"))
    if not bad:
        return [*rows, *difference]
    sparse = _resized(setting, 8, seed)
    pair = tuple(sparse.client_ids[-2:]) if sparse is not setting else bad[-2:]
    where = "" if sparse is setting else f" (on a setting of {sparse.clients} clients)"
    if len(pair) >= 2:
        rows.append(MaliciousRow(
            "(f) graph-seed grinding (SecAgg+)",
            graph_grinding(sparse, colluders=pair, inversion=inversion),
            graph_grinding(sparse, security="active", colluders=pair, inversion=inversion),
            f"3 neighbours a client, colluders {list(pair)}; semi-honest with t = 2 (active refuses t <= (k+1)/2), "
            f"active with t = 3{where}"))
        rows.append(MaliciousRow(
            "(g) neighbour omission (SecAgg+)",
            neighbour_omission(sparse, colluders=pair, inversion=inversion),
            neighbour_omission(sparse, security="active", colluders=pair, inversion=inversion),
            f"3 neighbours a client, t = 3, colluders {list(pair)} next to the target (ground seed / restarted "
            f"sessions); semi-honest clients go on with t - 1 live neighbours, active ones need t{where}"))
    wide = _resized(setting, 10, seed)
    need = minimum_colluders(SecAgg(security="active"), wide.clients)
    accomplices = tuple(wide.client_ids[-need:])
    rows.append(MaliciousRow(
        "(h) forged dropout by second sessions",
        second_session_split(wide, security="semi-honest", colluders=accomplices, inversion=inversion),
        second_session_split(wide, security="active", colluders=accomplices, inversion=inversion),
        f"{need} colluders of {wide.clients} (fewer than a third); active: second sessions of some clients under "
        f"the same round id and nonce would give each of two views its own quorum, but shares are bound to the "
        f"session digest S: the second view's holders refuse the target's shares"
        + ("" if wide is setting else f" (on a setting of {wide.clients} clients)")))
    return [*rows, *difference]


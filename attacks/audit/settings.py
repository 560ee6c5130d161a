"""How big an audit is: one frozen value, so that a report says exactly what produced it.

Two presets. The *full* audit is the one whose numbers mean something for a deployment: the
whole audit pool, 16 shadow models per mode, the inversion optimisers' published budgets.
``quick`` is sized for ``make demo`` (every registered mode within a few minutes on two
cores): a 600-example pool, 8 shadow models (every example has 4 IN and 4 OUT shadows), 10
FedAvg rounds, and a fraction of the inversion iterations (200 for DLG and iDLG, 500 for IG).
Its membership figures are noisier (300 non-members put the 1% FPR point on 3 examples and
the 0.1% point on none: the report says so), but which mode leaks what is already plain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["MEMBERSHIP_ATTACKS", "INVERSION_ATTACKS", "ATTACKS", "DEFAULT_ATTACKS", "AuditSettings",
           "audit_settings"]

MEMBERSHIP_ATTACKS = ("loss", "lira", "rmia")
INVERSION_ATTACKS = ("dlg", "idlg", "ig")
ATTACKS = MEMBERSHIP_ATTACKS + INVERSION_ATTACKS
DEFAULT_ATTACKS: tuple[str, ...] = ATTACKS
"""Every attack: LOSS, LiRA (online, fixed variance), RMIA (online), DLG, iDLG, Inverting Gradients."""


@dataclass(frozen=True)
class AuditSettings:
    """Everything that sizes an audit run (see the module docstring for the two presets).

    ``pool_size``: audit-pool examples (half of them train the target; ``None``: every example
    not held out for testing); ``colluders``: how many clients the colluding server controls
    (the highest ids); ``iterations``: per inversion method, ``None`` for the method's default.
    """

    dataset: str = "digits"
    clients: int = 5
    rounds: int = 30
    quick: bool = False
    pool_size: int | None = None
    test_size: int = 300
    shadows: int = 16
    hidden: tuple[int, ...] = (64,)
    local_epochs: int = 3
    batch_size: int = 16
    lr: float = 0.1
    colluders: int = 2
    inversion_clients: int | None = None
    iterations: tuple[tuple[str, int | None], ...] = (("dlg", None), ("idlg", None), ("ig", None))
    malicious_clients: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clients < 2:
            raise ValueError(f"an audit needs at least 2 clients, got {self.clients}")
        if self.rounds < 1 or self.shadows < 2:
            raise ValueError("rounds must be positive and shadows at least 2")
        if not 0 <= self.colluders < self.clients:
            raise ValueError(f"colluders must be in [0, {self.clients - 1}], got {self.colluders}")

    def iterations_for(self, method: str) -> int | None:
        return dict(self.iterations).get(method)

    @property
    def colluder_ids(self) -> tuple[int, ...]:
        """The clients the colluding server controls: the highest ids (clients are 0..n-1)."""
        return tuple(range(self.clients - self.colluders, self.clients))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        out["iterations"] = {m: n for m, n in self.iterations}
        return out


def audit_settings(*, dataset: str = "digits", clients: int | None = None, rounds: int | None = None,
                   quick: bool = False, **overrides: Any) -> AuditSettings:
    """The preset for ``quick`` with the caller's choices on top (``None`` keeps the preset's)."""
    base = AuditSettings(dataset=dataset, quick=quick)
    if quick:
        base = replace(base, rounds=10, pool_size=600, shadows=8,
                       iterations=(("dlg", 200), ("idlg", 200), ("ig", 500)))
    if clients is not None:
        base = replace(base, clients=clients, colluders=min(base.colluders, clients // 2))
    if rounds is not None:
        base = replace(base, rounds=rounds)
    return replace(base, **overrides) if overrides else base

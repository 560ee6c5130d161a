"""What one malicious-server attack achieved, in the terms an auditor reports.

Every attack of :mod:`attacks.malicious` ends the same way: either honest clients caught the
server (a :class:`~privagg.ProtocolViolation` raised by a client, the round aborted) or the
server holds candidate inputs, which are scored against the true inputs of the clients it was
after. Scoring is per *true* image: its PSNR against the closest candidate, because an
attacker looks at every candidate and needs only one to be right. An image counts as
recovered at :data:`RECOVERED_DB` or more (a faithful copy of an 8x8 digit; 15 dB is already
recognisable, 30 dB is indistinguishable by eye).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attacks.inversion.quality import psnr, ssim

__all__ = ["RECOVERED_DB", "Recovery", "MaliciousOutcome", "score_recovery"]

RECOVERED_DB = 30.0


@dataclass(frozen=True, eq=False)
class Recovery:
    """Candidates scored against the truth: ``best[j]`` is the candidate closest to
    ``truth[j]`` (clipped to the data range), ``psnr_db[j]`` / ``ssim[j]`` its quality."""

    truth: torch.Tensor
    best: torch.Tensor
    psnr_db: tuple[float, ...]
    ssim: tuple[float, ...]
    candidates: int

    @property
    def recovered(self) -> int:
        return sum(p >= RECOVERED_DB for p in self.psnr_db)

    @property
    def mean_psnr_db(self) -> float:
        return float(np.mean(self.psnr_db))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))


def score_recovery(candidates: torch.Tensor, truth: torch.Tensor, *,
                   data_range: tuple[float, float] = (0.0, 1.0)) -> Recovery | None:
    """Score ``candidates`` (``(m, C, H, W)``) against ``truth`` (``(n, C, H, W)``); ``None``
    when there is no candidate at all."""
    if len(candidates) == 0:
        return None
    low, high = data_range
    span = high - low
    cand = candidates.detach().float().clamp(low, high)
    tru = truth.detach().float()
    best, psnrs, ssims = [], [], []
    for image in tru:
        scores = [psnr(c, image, data_range=span) for c in cand]
        k = int(np.argmax(scores))
        best.append(cand[k])
        psnrs.append(scores[k])
        ssims.append(ssim(cand[k], image, data_range=span))
    return Recovery(tru, torch.stack(best), tuple(psnrs), tuple(ssims), len(cand))


@dataclass(frozen=True, eq=False)
class MaliciousOutcome:
    """One attack against one configuration of secure aggregation.

    ``detected``: an honest client refused to go on (``refusals``: client id -> its error) or
    the round aborted (``aborted``); ``completed``: the server got what the attack needed (an
    aggregate, or the shares it asked for). ``recovery`` scores what it reconstructed against
    the inputs of ``targets``; ``update_error`` is the largest error of the individual update
    the server isolated, when the attack isolates one. ``summary`` says all of it in a
    sentence, for the report.
    """

    attack: str
    security: str
    clients: int
    threshold: int
    targets: tuple[int, ...]
    completed: bool
    refusals: dict[int, str]
    aborted: str | None
    recovery: Recovery | None
    summary: str
    update_error: float | None = None
    detectable: bool = True
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def detected(self) -> bool:
        return bool(self.refusals) or self.aborted is not None

    @property
    def recovered(self) -> int:
        return 0 if self.recovery is None else self.recovery.recovered

    @property
    def total_images(self) -> int:
        return int(self.extra.get("images", 0 if self.recovery is None else len(self.recovery.truth)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: no tensors, refusals by client id as strings."""
        rec = self.recovery
        return {
            "attack": self.attack, "security": self.security, "clients": self.clients, "threshold": self.threshold,
            "targets": list(self.targets), "completed": self.completed, "detected": self.detected,
            "detectable_by_protocol": self.detectable,
            "refusals": {str(c): m for c, m in sorted(self.refusals.items())}, "aborted": self.aborted,
            "images": self.total_images, "recovered_images": self.recovered,
            "psnr_db": None if rec is None else rec.mean_psnr_db, "ssim": None if rec is None else rec.mean_ssim,
            "best_psnr_db": None if rec is None else max(rec.psnr_db),
            "update_max_error": self.update_error, "summary": self.summary, "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        return (f"MaliciousOutcome({self.attack!r}, {self.security}, detected={self.detected}, "
                f"recovered={self.recovered}/{self.total_images})")

"""privagg inside Flower 1.42's Message API (the ``flower`` extra).

* :class:`SecureFedAvg` - FedAvg with its aggregation step replaced by a privagg round: the
  one-line switch for a ServerApp (``SecureFedAvg("secagg+")`` instead of ``FedAvg()``).
* :class:`SecureAggregation` - the server-side workflow behind it, for any ``main(grid, context)``:
  one Flower message exchange per protocol stage, per-stage deadlines, silent nodes dropped.
* :class:`PrivaggMod` - the client-side Mod: answers the stage messages with a client
  session, leaves the user's ``train`` function as it is.
* :mod:`privagg.flower.records` - how our messages travel in Flower records (typed errors on
  anything else); :class:`LocalFederation` - real Flower processes on 127.0.0.1 for tests.

Any registered mode works through the common interface (``plain``, ``secagg``, ``secagg+``,
and the modes ``dp`` and ``he`` register). Importing this package never imports Flower: the
names above load on first use, and raise :class:`~privagg.errors.ConfigurationError` naming
the extra to install when Flower is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from privagg.errors import ConfigurationError

__all__ = ["SecureFedAvg", "SecureAggregation", "RoundOutcome", "PrivaggMod", "LocalFederation", "TlsFiles",
           "RunOutcome", "require_flower"]

_LAZY = {
    "SecureFedAvg": "privagg.flower.strategy",
    "SecureAggregation": "privagg.flower.workflow",
    "RoundOutcome": "privagg.flower.workflow",
    "PrivaggMod": "privagg.flower.mod",
    "LocalFederation": "privagg.flower.federation",
    "TlsFiles": "privagg.flower.federation",
    "RunOutcome": "privagg.flower.federation",
}
_NEEDS_FLWR = {"privagg.flower.strategy", "privagg.flower.workflow", "privagg.flower.mod"}

if TYPE_CHECKING:
    from privagg.flower.federation import LocalFederation, RunOutcome, TlsFiles
    from privagg.flower.mod import PrivaggMod
    from privagg.flower.strategy import SecureFedAvg
    from privagg.flower.workflow import RoundOutcome, SecureAggregation


def require_flower() -> None:
    """Raise :class:`ConfigurationError` unless Flower (``flwr``) is importable."""
    if importlib.util.find_spec("flwr") is None:
        raise ConfigurationError("privagg.flower needs Flower: install the extra with pip install 'privagg[flower]'")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'privagg.flower' has no attribute {name!r}")
    if module in _NEEDS_FLWR:
        require_flower()
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

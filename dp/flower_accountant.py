"""Our accountants behind Flower 1.42's ``flwr.serverapp.PrivacyAccountant`` protocol.

Flower's DP strategies (``DifferentialPrivacyServerSideFixedClipping`` and friends) take any
object with that protocol; :class:`FlowerAccountant` is one, backed by our RDP or PLD
accountant, so a Flower federation gets our (never looser) epsilons without changing its
strategy. Flower's ``GaussianPrivacyEvent`` maps onto our events: Poisson sampling with
``q = sample_size / population_size`` to a ``PoissonSampledEvent``, no amplification to a bare
``GaussianEvent``. Sampling without replacement (replace-one neighbours) has no accountant
here yet and is refused with a clear error rather than approximated. Requires the ``flower``
extra; flwr is imported when an adapter is built, not when ``dp`` is.
"""

from __future__ import annotations

import copy
from typing import Any

from dp.accountant import PrivacyAccountant
from dp.calibration import make_accountant
from dp.events import GaussianEvent, PoissonSampledEvent, PrivacyEvent
from dp.rdp import RdpAccountant
from privagg.errors import ConfigurationError

__all__ = ["FlowerAccountant"]

_SCHEMA = 1


def _flwr() -> Any:
    try:
        import flwr.serverapp as serverapp
    except ImportError:
        raise ConfigurationError("the Flower adapter needs the 'flower' extra: pip install 'privagg[flower]'") from None
    return serverapp


class FlowerAccountant:
    """A Flower ``PrivacyAccountant`` backed by ``backend`` ("rdp", "pld" or an accountant)."""

    def __init__(self, config: Any, backend: str | PrivacyAccountant = "rdp") -> None:
        self._flwr = _flwr()
        if not isinstance(config, self._flwr.PrivacyConfig):
            raise ConfigurationError("config must be a flwr.serverapp.PrivacyConfig")
        self._config = config
        self._backend_name = backend if isinstance(backend, str) else type(backend).__name__
        self._fresh = (lambda: make_accountant(backend)) if isinstance(backend, str) else (
            lambda: copy.deepcopy(backend))
        self._accountant = self._fresh()
        self._compositions: list[tuple[Any, int]] = []

    @property
    def config(self) -> Any:
        return self._config

    @property
    def num_releases(self) -> int:
        return sum(count for _, count in self._compositions)

    def _event(self, event: Any) -> PrivacyEvent:
        if not isinstance(event, self._flwr.GaussianPrivacyEvent):
            raise ConfigurationError(f"expected a flwr GaussianPrivacyEvent, got {type(event).__name__}")
        if event.population_size != self._config.population_size:
            raise ConfigurationError(f"event population {event.population_size} differs from the configured "
                                     f"{self._config.population_size}")
        method = self._config.sampling_method
        gaussian = GaussianEvent(event.noise_multiplier)
        if method is self._flwr.SamplingMethod.NO_AMPLIFICATION:
            return gaussian
        if method is self._flwr.SamplingMethod.POISSON:
            return PoissonSampledEvent(event.sample_size / event.population_size, gaussian)
        raise ConfigurationError(f"sampling method {method.value!r} is not supported by privagg's accountants")

    def compose(self, event: Any, count: int = 1) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"count must be a positive integer, got {count!r}")
        self._accountant.compose(self._event(event), count)
        self._compositions.append((event, count))

    def get_epsilon(self, delta: float) -> float:
        return float(self._accountant.get_epsilon(delta))

    def get_delta(self, epsilon: float) -> float:
        return float(self._accountant.get_delta(epsilon))

    def get_privacy_spent(self, delta: float | None = None) -> Any:
        target = self._config.target_delta if delta is None else delta
        order = None
        if isinstance(self._accountant, RdpAccountant):
            epsilon, order = self._accountant.get_epsilon_and_order(target)
        else:
            epsilon = self._accountant.get_epsilon(target)
        return self._flwr.PrivacySpent(epsilon=float(epsilon), delta=target, num_releases=self.num_releases,
                                       accounting_method=f"privagg-{self._backend_name}",
                                       optimal_order=None if order is None else float(order))

    def would_exceed(self, event: Any, max_epsilon: float | None = None, count: int = 1) -> bool:
        limit = self._config.max_epsilon if max_epsilon is None else max_epsilon
        if limit is None:
            raise ConfigurationError("max_epsilon must be given here or in the PrivacyConfig")
        trial = copy.deepcopy(self._accountant)
        trial.compose(self._event(event), count)
        return bool(trial.get_epsilon(self._config.target_delta) > limit)

    def state_dict(self) -> dict[str, object]:
        return {
            "schema_version": _SCHEMA,
            "backend": self._backend_name,
            "compositions": [{"event": {"noise_multiplier": e.noise_multiplier, "sample_size": e.sample_size,
                                        "population_size": e.population_size}, "count": c}
                             for e, c in self._compositions],
            "accountant": self._accountant.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("schema_version") != _SCHEMA or state.get("backend") != self._backend_name:
            raise ConfigurationError("accountant state comes from another schema or backend")
        accountant = self._fresh()
        accountant.load_state_dict(state["accountant"])  # type: ignore[arg-type]
        compositions = [(self._flwr.GaussianPrivacyEvent(**item["event"]), int(item["count"]))  # type: ignore[index]
                        for item in state["compositions"]]  # type: ignore[union-attr]
        self._accountant, self._compositions = accountant, compositions

    def __repr__(self) -> str:
        return f"FlowerAccountant(backend={self._backend_name!r}, releases={self.num_releases})"

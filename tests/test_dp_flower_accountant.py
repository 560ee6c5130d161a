"""Our accountants inside Flower's DP strategies, compared with Flower's own RdpAccountant."""

import pytest

flwr_serverapp = pytest.importorskip("flwr.serverapp")

from flwr.serverapp import (  # noqa: E402
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)

from dp.flower_accountant import FlowerAccountant  # noqa: E402
from privagg import ConfigurationError  # noqa: E402


def config(method=SamplingMethod.POISSON, max_epsilon=None):
    return PrivacyConfig(target_delta=1e-5, population_size=1000,
                         neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                         sampling_method=method, max_epsilon=max_epsilon)


@pytest.mark.parametrize("method, sample, sigma, rounds", [
    (SamplingMethod.POISSON, 10, 1.1, 1000),
    (SamplingMethod.POISSON, 40, 1.5, 500),
    (SamplingMethod.NO_AMPLIFICATION, 1000, 4.0, 20),
])
def test_epsilons_never_looser_than_flowers_rdp_accountant(method, sample, sigma, rounds):
    ours = FlowerAccountant(config(method))
    theirs = flwr_serverapp.RdpAccountant(config(method))
    event = GaussianPrivacyEvent(noise_multiplier=sigma, sample_size=sample, population_size=1000)
    ours.compose(event, rounds)
    theirs.compose(event, rounds)
    assert ours.num_releases == theirs.num_releases == rounds
    ours_eps, theirs_eps = ours.get_epsilon(1e-5), theirs.get_epsilon(1e-5)
    assert ours_eps <= theirs_eps * (1 + 1e-6)
    assert ours_eps > 0.5 * theirs_eps  # the same quantity, not something else
    spent = ours.get_privacy_spent()
    assert spent.epsilon == pytest.approx(ours_eps) and spent.num_releases == rounds and spent.optimal_order > 1
    pld = FlowerAccountant(config(method), backend="pld")
    pld.compose(event, rounds)
    assert pld.get_epsilon(1e-5) <= ours_eps * (1 + 1e-6)


def test_state_dict_round_trip_and_would_exceed():
    acc = FlowerAccountant(config(max_epsilon=2.0))
    event = GaussianPrivacyEvent(noise_multiplier=1.1, sample_size=10, population_size=1000)
    acc.compose(event, 300)
    restored = FlowerAccountant(config(max_epsilon=2.0))
    restored.load_state_dict(acc.state_dict())
    assert restored.get_epsilon(1e-5) == acc.get_epsilon(1e-5) and restored.num_releases == 300
    assert not acc.would_exceed(event)
    assert acc.would_exceed(event, count=5000)
    assert acc.num_releases == 300  # would_exceed does not compose


def test_unsupported_inputs_are_refused():
    acc = FlowerAccountant(config())
    with pytest.raises(ConfigurationError, match="population"):
        acc.compose(GaussianPrivacyEvent(noise_multiplier=1.0, sample_size=10, population_size=999))
    replace_one = PrivacyConfig(target_delta=1e-5, population_size=100,
                                neighboring_relation=NeighboringRelation.REPLACE_ONE,
                                sampling_method=SamplingMethod.WITHOUT_REPLACEMENT)
    with pytest.raises(ConfigurationError, match="without-replacement"):
        FlowerAccountant(replace_one).compose(GaussianPrivacyEvent(noise_multiplier=1.0, sample_size=10,
                                                                   population_size=100))


def test_flowers_fixed_clipping_strategy_accounts_with_our_accountant():
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    acc = FlowerAccountant(config(SamplingMethod.NO_AMPLIFICATION, max_epsilon=50.0))
    strategy = DifferentialPrivacyServerSideFixedClipping(FedAvg(), noise_multiplier=2.0, clipping_norm=1.0,
                                                          num_sampled_clients=3, accountant=acc)
    # Flower's accounting path only counts the sampled clients' messages (building real ones needs
    # a running federation's task identity); the strategy and its accounting calls are Flower's own.
    messages = [f"message to node {i}" for i in range(3)]
    for server_round in (1, 2):
        strategy._prepare_accounting(server_round, messages)
        strategy._compose_release(strategy._pop_pending_event(server_round))
    spent = strategy.privacy_spent()
    assert spent.num_releases == 2 and spent.accounting_method == "privagg-rdp"
    reference = flwr_serverapp.RdpAccountant(config(SamplingMethod.NO_AMPLIFICATION))
    reference.compose(GaussianPrivacyEvent(noise_multiplier=2.0, sample_size=3, population_size=1000), 2)
    assert spent.epsilon <= reference.get_epsilon(1e-5) * (1 + 1e-6)

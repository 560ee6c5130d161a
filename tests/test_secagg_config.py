"""What a SecAgg configuration accepts, and what a round over it must fit (issue 12, items 1, 7
and 11): bounds on the roster, the configured identities, the vector length, typed errors."""

import numpy as np
import pytest

from privagg import ConfigurationError, EncodingOverflow, InsecureParameters, PrivaggError
from privagg.identity import Identities, Roster
from secagg import SecAgg


def test_numpy_integers_are_accepted_and_bools_refused():
    config = SecAgg(threshold=np.int64(4), neighbours=np.int32(6), min_clients=np.int16(8))
    assert (config.threshold, config.neighbours, config.min_clients) == (4, 6, 8)
    assert all(type(v) is int for v in (config.threshold, config.neighbours, config.min_clients))
    for bad in (dict(threshold=True), dict(neighbours=False), dict(min_clients=True), dict(dimension=True),
                dict(threshold=2.0), dict(neighbours="some"), dict(corrupt_fraction=1.0),
                dict(dropout_fraction=-0.1), dict(security_bits=0), dict(max_clients=True)):
        with pytest.raises(ConfigurationError):
            SecAgg(**bad)


def test_huge_clip_and_scale_give_a_typed_error():
    with pytest.raises(EncodingOverflow):
        SecAgg(clip=1e300, scale=1e300)
    with pytest.raises(PrivaggError):
        SecAgg(clip=float("nan"))


def test_the_roster_must_fit_the_configuration():
    config = SecAgg(threshold=3, min_clients=5, max_clients=8)
    assert config.admit(range(5), dimension=3).roster == (0, 1, 2, 3, 4)
    with pytest.raises(InsecureParameters, match="outside this configuration's bounds"):
        config.admit(range(4), dimension=3)
    with pytest.raises(InsecureParameters, match=r"\[5, 8\]"):  # more clients than the encoding can sum
        config.admit(range(9), dimension=3)
    with pytest.raises(ConfigurationError, match="vector length"):
        config.admit(range(5))
    with pytest.raises(ConfigurationError, match="differs"):
        SecAgg(dimension=4).admit(range(5), dimension=3)


def test_active_rounds_admit_only_the_configured_roster():
    identities = Identities(range(10))
    roster = identities.roster()
    config = SecAgg(security="active", roster=roster)
    assert config.roster_bounds() == (10, 1024)  # by default nobody may be left out
    assert len(config.admit(range(10), dimension=2).roster) == 10
    with pytest.raises(InsecureParameters):
        config.admit(range(9), dimension=2)
    sampled = SecAgg(security="active", roster=roster, min_clients=6)
    assert len(sampled.admit(range(6), dimension=2).roster) == 6
    with pytest.raises(InsecureParameters, match="not in the configured roster"):
        sampled.admit([0, 1, 2, 3, 4, 99], dimension=2)


def test_roster_and_signing_key_files_round_trip(tmp_path):
    identities = Identities([3, 5, 8])
    path = identities.save(tmp_path)
    roster = Roster.load(path)
    assert roster == identities.roster() and sorted(roster) == [3, 5, 8]
    from privagg.identity import SigningKey

    key = SigningKey.load(tmp_path / "client-5.key")
    assert roster.verify(5, key.sign(b"m"), b"m") and not roster.verify(3, key.sign(b"m"), b"m")
    assert (tmp_path / "client-5.key").stat().st_mode & 0o077 == 0
    assert "secret" in repr(key) and key.public_bytes().hex() not in repr(key)
    with pytest.raises(ConfigurationError):
        Roster.from_json('{"1": "zz"}')


def test_active_thresholds_above_k_are_refused():
    # A client goes on only with t live neighbours of its own: t = k + 1 can never be met.
    with pytest.raises(InsecureParameters):
        SecAgg(security="active", neighbours=4, threshold=5).graph_parameters(20)

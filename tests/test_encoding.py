import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from privagg import EncodingOverflow, FixedPoint, InvalidUpdate, Plain
from privagg.encoding import add_mod, neg_mod, reduce_mod, sub_mod, sum_mod, to_signed, uint_dtype
from privagg.errors import ConfigurationError


@st.composite
def client_vectors(draw, clip=1.0):
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 40))
    values = st.floats(-clip, clip, allow_nan=False, allow_infinity=False)
    return np.array(draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=n, max_size=n)))


@given(client_vectors(), st.sampled_from([16, 24, 32, 40, 64]), st.sampled_from(["deterministic", "stochastic"]))
def test_sum_of_encodings_decodes_within_the_quantization_bound(vectors, bits, rounding):
    fp = FixedPoint(bits=bits, clip=1.0, max_clients=16, rounding=rounding)
    total = sum_mod([fp.encode(v, seed=i) for i, v in enumerate(vectors)], bits)
    decoded = fp.decode(total, clients=len(vectors))
    exact_sums = np.array([math.fsum(column) for column in vectors.T])
    error = np.max(np.abs(decoded - exact_sums))
    assert error <= fp.max_error(len(vectors)) * (1 + 1e-9)


@given(client_vectors(clip=3.0))
def test_values_outside_the_range_are_clipped_before_encoding(vectors):
    fp = FixedPoint(bits=32, clip=1.0, max_clients=16)
    decoded = fp.decode(sum_mod([fp.encode(v) for v in vectors], 32), clients=len(vectors))
    clipped = np.array([math.fsum(column) for column in np.clip(vectors, -1, 1).T])
    assert np.max(np.abs(decoded - clipped)) <= fp.max_error(len(vectors)) * (1 + 1e-9)


def test_deterministic_rounding_is_a_function_of_the_input():
    fp = FixedPoint(bits=32, clip=1.0, scale=2**10)
    x = np.random.default_rng(0).uniform(-1, 1, 1000)
    assert np.array_equal(fp.encode(x), fp.encode(x))
    assert np.max(np.abs(fp.quantize(x) - x)) <= 0.5 / 2**10


def test_stochastic_rounding_is_unbiased_where_deterministic_is_not():
    fp_s = FixedPoint(bits=32, clip=1.0, scale=1.0, rounding="stochastic")
    fp_d = FixedPoint(bits=32, clip=1.0, scale=1.0)
    x = np.full(200_000, 0.3)
    mean_s = fp_s.quantize(x, seed=7).mean()
    # Binomial(200000, 0.3)/200000 has sd ~0.001: 5 sd is a bound that can still fail.
    assert abs(mean_s - 0.3) < 0.005
    assert fp_d.quantize(x).mean() == 0.0


def test_scale_is_derived_from_max_clients_as_a_power_of_two():
    fp = FixedPoint(bits=32, clip=1.0, max_clients=1024)
    assert fp.scale == 2.0**20
    assert fp.capacity >= 1024
    assert math.log2(fp.scale).is_integer()


def test_overflow_is_detected_before_the_round_and_names_the_problem():
    fp = FixedPoint(bits=16, clip=1.0, scale=2**10)
    assert fp.capacity == 31
    fp.check_capacity(31)
    with pytest.raises(EncodingOverflow) as err:
        fp.check_capacity(32)
    message = str(err.value)
    assert "32 clients" in message and "bits=16" in message and "[-1, 1]" in message
    assert (err.value.clients, err.value.bits) == (32, 16)
    with pytest.raises(EncodingOverflow):
        Plain(fp).server(range(32))


def test_overflow_really_would_have_happened():
    # The capacity bound is tight: one more client at the extreme wraps around.
    fp = FixedPoint(bits=16, clip=1.0, scale=2**10)
    ones = np.ones(3)
    total = sum_mod([fp.encode(ones) for _ in range(fp.capacity + 1)], 16)
    assert not np.allclose(fp.decode(total), fp.capacity + 1)
    total = sum_mod([fp.encode(ones) for _ in range(fp.capacity)], 16)
    assert np.allclose(fp.decode(total), fp.capacity)


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_values_are_refused_naming_the_index(bad, word):
    x = np.zeros(10)
    x[7] = bad
    with pytest.raises(InvalidUpdate, match=rf"{word} at index 7"):
        FixedPoint().encode(x)


@pytest.mark.parametrize("values", [np.array(["a", "b"]), np.array([1 + 2j]), np.array([object()])])
def test_non_real_dtypes_are_refused(values):
    with pytest.raises(InvalidUpdate, match="dtype"):
        FixedPoint().encode(values)


def test_shaped_arrays_must_be_flattened_first():
    with pytest.raises(InvalidUpdate, match="flatten"):
        FixedPoint().encode(np.zeros((2, 2)))


@pytest.mark.parametrize("kwargs", [dict(bits=1), dict(bits=65), dict(clip=0), dict(clip=float("nan")),
                                    dict(scale=-1.0), dict(rounding="up"), dict(max_clients=0)])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        FixedPoint(**kwargs)


def test_a_scale_too_large_for_one_client_is_an_overflow():
    with pytest.raises(EncodingOverflow):
        FixedPoint(bits=8, clip=1.0, scale=200.0)


@given(st.integers(2, 64), st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=20),
       st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=20))
def test_modular_arithmetic_matches_python_integers(bits, xs, ys):
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    m = 1 << bits
    a = reduce_mod(np.array([x % m for x in xs], dtype=np.uint64), bits)
    b = reduce_mod(np.array([y % m for y in ys], dtype=np.uint64), bits)
    assert a.dtype == uint_dtype(bits)
    assert [int(v) for v in add_mod(a.copy(), b, bits)] == [(x + y) % m for x, y in zip(xs, ys)]
    assert [int(v) for v in sub_mod(a.copy(), b, bits)] == [(x - y) % m for x, y in zip(xs, ys)]
    assert [int(v) for v in neg_mod(a, bits)] == [(-x) % m for x in xs]
    signed = [((x % m) + m // 2) % m - m // 2 for x in xs]
    assert [int(v) for v in to_signed(a, bits)] == signed


def test_reduce_mod_of_negative_int64():
    assert [int(v) for v in reduce_mod(np.array([-1, -5, 3], dtype=np.int64), 12)] == [4095, 4091, 3]

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privagg import InvalidUpdate, MalformedMessage, UpdateSpec, flatten, unflatten

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "float16", "float32", "float64"]


def array_strategy(dtype):
    dt = np.dtype(dtype)
    elements = None
    if dt.kind in "iu":
        info = np.iinfo(dt)
        elements = st.integers(max(info.min, -(2**53)), min(info.max, 2**53))
    elif dt.kind == "f":
        elements = st.floats(width=dt.itemsize * 8, allow_nan=False)
    return hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), elements=elements)


any_array = st.sampled_from(DTYPES).flatmap(array_strategy)


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)


@given(st.one_of(
    any_array,
    st.lists(any_array, min_size=1, max_size=4),
    st.lists(any_array, min_size=1, max_size=4).map(tuple),
    st.dictionaries(st.text(min_size=1, max_size=8), any_array, min_size=1, max_size=4),
))
def test_numpy_updates_round_trip_exactly(update):
    vector, spec = flatten(update)
    assert vector.dtype == np.float64 and vector.shape == (spec.size,)
    assert_same(unflatten(vector, spec), update)
    assert UpdateSpec.from_json(spec.to_json()) == spec


def test_torch_state_dict_round_trips_with_integer_buffers_and_half_precision():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    )
    model.train()
    model(torch.randn(5, 1, 8, 8))  # moves running stats and num_batches_tracked
    state = model.state_dict()
    state["extra.bf16"] = torch.randn(3, 2).to(torch.bfloat16)
    state["extra.f16"] = torch.randn(4).to(torch.float16)
    state["extra.mask"] = torch.tensor([True, False, True])
    assert state["1.num_batches_tracked"].dtype == torch.int64
    assert int(state["1.num_batches_tracked"]) == 1

    vector, spec = flatten(state)
    assert spec.kind == "torch"
    back = unflatten(vector, spec)
    assert list(back) == list(state)
    for key in state:
        assert back[key].dtype == state[key].dtype, key
        assert back[key].shape == state[key].shape, key
        assert torch.equal(back[key], state[key]), key
    model.load_state_dict({k: v for k, v in back.items() if not k.startswith("extra.")})


def test_unflatten_of_an_aggregate_rounds_integer_buffers():
    vector, spec = flatten({"w": np.zeros(2, np.float32), "n": np.array(3, np.int64)})
    back = unflatten(vector * 2.5, spec)  # e.g. a sum of 2.5 "clients" worth
    assert back["n"].dtype == np.int64 and int(back["n"]) == 8  # rint(7.5) = 8 (ties to even)


def test_integers_beyond_float64_precision_are_refused():
    with pytest.raises(InvalidUpdate, match="2\\^53"):
        flatten([np.array([2**60], dtype=np.int64)])


@pytest.mark.parametrize("update", [
    [np.array([1 + 1j])], {"a": np.array(["x"])}, "text", 42 + 0j, {1: np.zeros(2)}, [], {},
])
def test_unsupported_updates_are_refused(update):
    with pytest.raises(InvalidUpdate):
        flatten(update)


def test_unflatten_refuses_a_vector_of_the_wrong_length():
    _, spec = flatten([np.zeros(3), np.zeros((2, 2))])
    with pytest.raises(InvalidUpdate, match="7 values"):
        unflatten(np.zeros(6), spec)


@pytest.mark.parametrize("text", [
    b"", b"{", b'{"kind": "tree", "tensors": []}', b'{"kind": "list", "tensors": [["a", [-1], "float32"]]}',
    b'{"kind": "list", "tensors": [["a", [2], "complex64"]]}', b'{"kind": "array", "tensors": []}', b"[]",
])
def test_malformed_specs_raise_malformed_message(text):
    with pytest.raises(MalformedMessage):
        UpdateSpec.from_json(text)

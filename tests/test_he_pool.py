"""The server's sum across processes (he.pool, he.worker): the same ciphertexts, bit for bit, as
one process adds; uploads all or nothing whichever slice is refused; typed errors from workers;
a dead worker aborts the round and the next round gets fresh workers; the worker protocol
refuses truncated frames."""

import io
import json
import os
import signal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tenseal")

from he import CKKS, CKKSParameters, SharedKey  # noqa: E402
from he.client import CKKSClient  # noqa: E402
from he.messages import EncryptRequest  # noqa: E402
from he.pool import (  # noqa: E402
    ADD,
    BEGIN,
    DUMP,
    MIN_SLICE,
    ServerPool,
    parameters_to_json,
    read_frame,
    resolve_processes,
    write_frame,
)
from he.ring import Ring  # noqa: E402
from he.sums import CiphertextSum  # noqa: E402
from he.worker import serve  # noqa: E402
from privagg import AggregationAborted, ConfigurationError, MalformedMessage, simulate  # noqa: E402
from privagg.messages import SERVER_ID  # noqa: E402

PARAMS = CKKSParameters.from_preset("lean")
RING = Ring(PARAMS)
KEY = SharedKey.generate(PARAMS)
N_CT = 3 * MIN_SLICE + 2  # enough ciphertexts for three slices
N_VALUES = N_CT * PARAMS.values_per_ciphertext - 5


def uploads(count, seed=0, n_ct=N_CT):
    """``count`` clients' seeded ciphertexts of random updates (lists of ``n_ct`` blobs)."""
    config = CKKS(shared_key=KEY, min_clients=1, authenticated=False)
    rng = np.random.default_rng(seed)
    out = []
    for cid in range(count):
        values = rng.uniform(-1, 1, n_ct * PARAMS.values_per_ciphertext - 5)
        client = CKKSClient(config, cid, values, 1, shared_key=KEY)
        reply = client.respond(EncryptRequest(1, SERVER_ID, cid, PARAMS.digest, KEY.key_id, b""))
        out.append([reply.ciphertexts[i] for i in range(n_ct)])
    return out


UPLOADS = uploads(4)


def local_dump(blob_lists):
    total = CiphertextSum(RING, seeded=True)
    for blobs in blob_lists:
        total.add(blobs, "c")
    return total.dump()


@pytest.fixture(scope="module")
def pool3():
    pool = ServerPool(3)
    yield pool
    pool.close()


def corrupt(blob):
    """A valid header over a body SEAL refuses to load (as in test_he_adversarial)."""
    return blob[:40] + bytes(5000) + blob[5040:]


def test_pooled_sum_is_bit_identical_to_one_process(pool3):
    pooled = pool3.new_sum(RING, seeded=True)
    for blobs in UPLOADS:
        pooled.add(blobs, "c")
    assert pooled._bounds is not None and len(pooled._bounds) == 3  # the work really was split
    assert pooled.dump() == local_dump(UPLOADS)


@pytest.mark.parametrize("bad_index", [0, MIN_SLICE + 3, N_CT - 1])
def test_refused_slice_leaves_every_slice_untouched(pool3, bad_index):
    pooled = pool3.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")
    bad = list(UPLOADS[1])
    bad[bad_index] = corrupt(bad[bad_index])
    with pytest.raises(MalformedMessage, match=f"client 1's ciphertext {bad_index}\\b"):
        pooled.add(bad, "client 1")
    pooled.add(UPLOADS[2], "client 2")
    assert pooled.uploads == 2
    assert pooled.dump() == local_dump([UPLOADS[0], UPLOADS[2]])


def test_first_upload_refused_in_a_worker_slice_then_others_add(pool3):
    pooled = pool3.new_sum(RING, seeded=True)
    bad = list(UPLOADS[0])
    bad[-1] = corrupt(bad[-1])
    with pytest.raises(MalformedMessage):
        pooled.add(bad, "client 0")
    for blobs in UPLOADS[1:3]:
        pooled.add(blobs, "c")
    assert pooled.dump() == local_dump(UPLOADS[1:3])


def test_first_error_in_ciphertext_order_is_raised(pool3):
    pooled = pool3.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")
    bad = list(UPLOADS[1])
    for i in (N_CT - 1, MIN_SLICE + 1):
        bad[i] = corrupt(bad[i])
    with pytest.raises(MalformedMessage, match=f"ciphertext {MIN_SLICE + 1}\\b"):
        pooled.add(bad, "client 1")
    assert pooled.dump() == local_dump(UPLOADS[:1])


def test_shared_memory_grows_between_rounds():
    pool = ServerPool(2)
    try:
        small = [blobs[: 2 * MIN_SLICE] for blobs in UPLOADS[:2]]
        first = pool.new_sum(RING, seeded=True)
        for blobs in small:
            first.add(blobs, "c")
        assert first.dump() == local_dump(small)
        large = uploads(2, seed=1, n_ct=80)  # over 1 MiB a slice: the memory file grows under the worker
        second = pool.new_sum(RING, seeded=True)
        for blobs in large:
            second.add(blobs, "c")
        assert second.dump() == local_dump(large)
    finally:
        pool.close()


def test_small_updates_stay_in_this_process(pool3):
    pooled = pool3.new_sum(RING, seeded=True)
    small = [blobs[: MIN_SLICE * 2 - 1] for blobs in UPLOADS[:2]]
    for blobs in small:
        pooled.add(blobs, "c")
    assert pooled._bounds == [(0, MIN_SLICE * 2 - 1)] and pooled._begun == []
    assert pooled.dump() == local_dump(small)


@settings(max_examples=6, deadline=None)
@given(st.integers(2, 5), st.randoms(use_true_random=False))
def test_rounds_with_a_pool_sum_whoever_uploaded(n, rnd):
    rng = np.random.default_rng(rnd.getrandbits(32))
    agg = CKKS(shared_key=KEY, min_clients=1, server_processes=2, authenticated=False)
    updates = {cid: rng.uniform(-1, 1, 2 * MIN_SLICE * PARAMS.values_per_ciphertext + 7) for cid in range(n)}
    dropped = {cid: "collect_ciphertexts" for cid in range(n) if rnd.random() < 0.3 and cid > 0}
    result = simulate(agg, updates, dropouts=dropped, round_id=rnd.getrandbits(20))
    included = sorted(set(updates) - set(dropped))
    assert list(result.included) == included
    truth = np.sum([updates[c] for c in included], axis=0)
    bound = 7 * (PARAMS.release_noise_std(len(included)) + PARAMS.natural_error_std(len(included)))
    assert np.max(np.abs(result.aggregate - truth)) < bound


def test_dead_worker_aborts_the_round_and_the_next_round_gets_fresh_workers():
    pool = ServerPool.shared(2)
    pooled = pool.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")
    os.kill(pool.workers[0].process.pid, signal.SIGKILL)
    pool.workers[0].process.wait()
    with pytest.raises(AggregationAborted, match="worker"):
        pooled.add(UPLOADS[1], "client 1")
    with pytest.raises(AggregationAborted):
        pooled.dump()
    fresh = ServerPool.shared(2)
    assert fresh is not pool and fresh.alive
    again = fresh.new_sum(RING, seeded=True)
    for blobs in UPLOADS[:2]:
        again.add(blobs, "c")
    assert again.dump() == local_dump(UPLOADS[:2])


def test_abandoned_rounds_are_dropped_by_the_workers(pool3):
    pooled = pool3.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "c")
    token, workers = pooled.token, list(pooled._begun)
    del pooled  # the server session went away mid-round
    follow = pool3.new_sum(RING, seeded=True)
    follow.add(UPLOADS[1], "c")  # its exchange flushes the abandoned round first
    with pool3.lock:
        workers[0].send(DUMP, {"token": token})
        error, _ = workers[0].reply()
    assert error is not None and "KeyError" in str(error)


def test_worker_protocol_on_streams():
    out = io.BytesIO()
    frames = io.BytesIO()
    write_frame(frames, BEGIN, {"token": 7, "params": parameters_to_json(PARAMS), "seeded": True, "first": 0})
    write_frame(frames, ADD, {"token": 7, "who": "client 3"}, [corrupt(UPLOADS[0][0])])
    write_frame(frames, ADD, {"token": 7, "who": "client 4"}, UPLOADS[0][:2])
    write_frame(frames, DUMP, {"token": 7})
    write_frame(frames, b"?", {"token": 7})
    frames.seek(0)
    serve(frames, out)
    out.seek(0)
    replies = [read_frame(out) for _ in range(5)]
    assert [r[0] for r in replies] == [b"K", b"E", b"K", b"K", b"E"]
    assert replies[1][1]["kind"] == "MalformedMessage" and "client 3's ciphertext 0" in replies[1][1]["text"]
    assert replies[3][2] == local_dump([UPLOADS[0][:2]])
    assert read_frame(out) is None


@given(st.binary(max_size=64), st.lists(st.binary(max_size=40), max_size=4), st.integers(0, 10))
def test_frames_round_trip_and_truncation_is_typed(op_tail, blobs, cut):
    buf = io.BytesIO()
    write_frame(buf, b"A", {"x": op_tail.hex()}, blobs)
    data = buf.getvalue()
    assert read_frame(io.BytesIO(data)) == (b"A", {"x": op_tail.hex()}, blobs)
    with pytest.raises(MalformedMessage):
        read_frame(io.BytesIO(data[: max(1, len(data) - 1 - cut)]))


@pytest.mark.parametrize("bad", [0, -1, 257, 1.5, "two", True, None])
def test_bad_process_counts_are_refused(bad):
    with pytest.raises(ConfigurationError, match="server_processes"):
        CKKS(server_processes=bad)
    with pytest.raises(ConfigurationError, match="server_processes"):
        resolve_processes(bad)


def test_auto_is_every_usable_cpu():
    assert resolve_processes("auto") == len(os.sched_getaffinity(0))


def test_bench_with_a_pool_reports_wall_and_cpu_time(capsys):
    from privagg.cli import main

    values = 2 * MIN_SLICE * PARAMS.values_per_ciphertext
    code = main(["bench", "ckks", "--clients", "3", "--params", str(values), "--dropout", "0",
                 "-o", "server_processes=2", "--format", "json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["server_processes"] == 2 and report["max_rel_error"] <= 1e-6
    for key in ("aggregate_seconds", "aggregate_cpu_seconds", "round_latency_seconds", "round_latency_cpu_seconds",
                "encrypt_cpu_seconds_per_client", "decrypt_cpu_seconds", "total_cpu_seconds"):
        assert report[key] > 0, key


def test_a_bad_span_is_refused_and_the_shared_memory_still_grows():
    from he.worker import _Shared

    fd = os.memfd_create("test-pool")
    try:
        os.ftruncate(fd, 100)
        os.pwrite(fd, bytes(range(100)), 0)
        shared = _Shared(fd)
        with pytest.raises(MalformedMessage, match="outside the 100-byte"):
            shared.views([[0, 10], [95, 10]])
        os.ftruncate(fd, 1000)  # the parent grows the file: the worker remaps, no view left behind
        os.pwrite(fd, b"grown", 900)
        (view,) = shared.views([[900, 5]])
        assert bytes(view) == b"grown"
        view.release()
    finally:
        os.close(fd)

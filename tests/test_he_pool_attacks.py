"""An attacker against the server's worker pool (he.pool, he.worker), with real TenSEAL
ciphertexts and real worker processes.

* A crafted upload (a ciphertext claiming scale -1.0, 0, NaN, inf, 2^200, ...; any crafted SEAL
  header) is refused with a typed error in whichever slice it lands, every worker's reply is
  read, and the pool stays in step: a later round, or one interleaved with it, is exact.
* A pool that does fall out of step (a reply that answers another request, a worker refusing a
  request of ours, an exception midway) is caught by the requests' tags and retired: each round
  is exact or refused, never mixed with another round's slices; the next round gets fresh workers.
* Workers run isolated from the server's working directory (a planted ``he/`` or
  ``tenseal.py`` there is never imported) and the pool's descriptors are inherited by no other
  child of the server.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tenseal")

from he import CKKS, CKKSParameters, SharedKey  # noqa: E402
from he.client import CKKSClient  # noqa: E402
from he.messages import EncryptRequest, as_ciphertext_map  # noqa: E402
from he.pool import DISCARD, MIN_SLICE, ServerPool, worker_path, write_frame  # noqa: E402
from he.ring import Ring  # noqa: E402
from he.sums import CiphertextSum  # noqa: E402
from privagg import AggregationAborted, MalformedMessage, ProtocolViolation  # noqa: E402
from privagg.messages import SERVER_ID  # noqa: E402

PARAMS = CKKSParameters.from_preset("lean")
RING = Ring(PARAMS)
KEY = SharedKey.generate(PARAMS)
N_CT = 2 * MIN_SLICE  # two slices: ciphertexts 0..15 in this process, 16..31 in a worker
N_VALUES = N_CT * PARAMS.values_per_ciphertext - 3
OWN, WORKER = 0, N_CT - 1  # a ciphertext in this process's slice, one in the worker's
TYPED = (MalformedMessage, ProtocolViolation)
CRAFTED_SCALES = [-1.0, 0.0, -0.0, math.nan, math.inf, -math.inf, 2.0**200, 1e308, 5e-324, 1.0,
                  PARAMS.scale * (1 + 2**-52), -PARAMS.scale]


def seeded(values, scale=None):
    """One client-style seeded ciphertext of ``values`` (zero-padded), claiming ``scale`` if given
    (set on the plaintext before encryption: SEAL copies it into the ciphertext's header)."""
    (plaintext,) = RING.encode(np.asarray(values, dtype=np.float64))
    if scale is not None:
        plaintext.scale = scale
    return RING.dump(KEY.encryptor().encrypt_symmetric(plaintext))


def crafted_scale(scale):
    return seeded(np.zeros(PARAMS.values_per_ciphertext), scale)


def uploads(count, seed=0):
    config = CKKS(shared_key=KEY, min_clients=1, authenticated=False)
    rng = np.random.default_rng(seed)
    out = []
    for cid in range(count):
        client = CKKSClient(config, cid, rng.uniform(-1, 1, N_VALUES), 1, shared_key=KEY)
        reply = client.respond(EncryptRequest(1, SERVER_ID, cid, PARAMS.digest, KEY.key_id, b""))
        out.append([reply.ciphertexts[i] for i in range(N_CT)])
    return out


UPLOADS = uploads(3)


def local_dump(blob_lists):
    total = CiphertextSum(RING, seeded=True)
    for blobs in blob_lists:
        total.add(blobs, "c")
    return total.dump()


def with_blob(blobs, index, blob):
    out = list(blobs)
    out[index] = blob
    return out


@pytest.fixture(scope="module")
def pool():
    pool = ServerPool(2)
    yield pool
    pool.close()


# -- whole rounds on the process's shared pool ------------------------------------------------------
class Round:
    """One CKKS round (provisioned key, server_processes=2) driven by hand, so that rounds can
    interleave and an upload can be tampered with on its way."""

    def __init__(self, round_id, n_clients, seed):
        self.agg = CKKS(shared_key=KEY, min_clients=1, server_processes=2, authenticated=False)
        rng = np.random.default_rng(seed)
        self.updates = {cid: rng.uniform(-1, 1, N_VALUES) for cid in range(n_clients)}
        self.server = self.agg.server(sorted(self.updates), round_id=round_id)
        self.clients = {cid: self.agg.client(cid, x, round_id=round_id) for cid, x in self.updates.items()}
        self.requests = self.server.messages_to_send()

    def upload(self, cid, tamper=None):
        reply = self.clients[cid].respond(self.requests[cid].to_bytes())
        if tamper is not None:
            blobs = [reply.ciphertexts[i] for i in range(N_CT)]
            reply = dataclasses.replace(reply, ciphertexts=as_ciphertext_map(tamper(blobs)))
        self.server.receive(cid, reply.to_bytes())

    def finish(self):
        while not self.server.finished:
            self.server.deadline_passed()
            for cid, message in self.server.messages_to_send().items():
                answer = self.clients[cid].respond(message.to_bytes())
                if answer is not None:
                    self.server.receive(cid, answer.to_bytes())
        return self.server.result()

    def error(self, result, included):
        assert list(result.included) == sorted(included)
        truth = np.sum([self.updates[c] for c in included], axis=0)
        return float(np.max(np.abs(result.aggregate - truth)))

    def bound(self, n):
        return 7 * (PARAMS.release_noise_std(n) + PARAMS.natural_error_std(n))


def bad_scale(index, scale=-1.0):
    return lambda blobs: with_blob(blobs, index, crafted_scale(scale))


def test_a_bad_scale_upload_is_refused_typed_and_every_later_round_is_exact():
    first = Round(101, 3, seed=1)
    first.upload(0)
    try:
        first.upload(1, bad_scale(OWN))  # this process's slice: math.log2(-1.0) before the worker's reply
        refusal = None
    except Exception as exc:  # noqa: BLE001 - what matters is which error
        refusal = exc
    first.upload(2)
    results = [(first, first.finish(), [0, 2])]
    for r in range(3):  # later rounds in the same process, on the same shared pool
        later = Round(102 + r, 2, seed=2 + r)
        for cid in later.updates:
            later.upload(cid)
        results.append((later, later.finish(), list(later.updates)))
    assert isinstance(refusal, ProtocolViolation) and "scale" in str(refusal), repr(refusal)
    for rnd, result, included in results:
        assert rnd.error(result, included) < rnd.bound(len(included))


@pytest.mark.parametrize("where", [OWN, WORKER])
def test_interleaved_rounds_are_each_exact_or_refused_never_mixed(where):
    a, b = Round(201, 3, seed=11), Round(202, 3, seed=12)
    a.upload(0)
    b.upload(0)
    try:
        a.upload(1, bad_scale(where))
        refusal = None
    except Exception as exc:  # noqa: BLE001 - what matters is which error
        refusal = exc
    steps = [lambda: b.upload(1), lambda: a.upload(2), lambda: b.upload(2)]
    outcomes = {}
    for rnd, included in ((a, [0, 2]), (b, [0, 1, 2])):
        try:
            while steps and rnd is a:  # the other round's uploads go on between the refusal and a's end
                steps.pop(0)()
            result = rnd.finish()
        except AggregationAborted:
            outcomes[rnd.server.round_id] = "refused"
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. a client refusing a short aggregate: neither outcome
            outcomes[rnd.server.round_id] = f"failed ({type(exc).__name__}: {exc})"
            continue
        error = rnd.error(result, included)
        outcomes[rnd.server.round_id] = "exact" if error < rnd.bound(len(included)) else f"mixed (error {error:.3g})"
    assert all(o in ("exact", "refused") for o in outcomes.values()), outcomes
    assert isinstance(refusal, ProtocolViolation) and "scale" in str(refusal), repr(refusal)
    assert outcomes == {201: "exact", 202: "exact"}  # nothing went out of step: nothing needed refusing


# -- crafted scales and headers in each slice --------------------------------------------------------
@pytest.mark.parametrize("scale", CRAFTED_SCALES, ids=repr)
def test_crafted_scales_are_refused_typed_by_the_ring_and_a_sum(scale):
    blob = crafted_scale(scale)
    # SEAL itself refuses a zero scale (MalformedMessage); every other one loads and is refused here.
    with pytest.raises(TYPED, match="client 7's ciphertext 0 (has scale|does not load)"):
        RING.load_ciphertext(blob, seeded=True, what="client 7's ciphertext 0")
    total = CiphertextSum(RING, seeded=True)
    total.add(UPLOADS[0][:1], "c")
    with pytest.raises(TYPED, match="client 7's ciphertext 0 (has scale|does not load)"):
        total.add([blob], "client 7")
    assert total.dump() == local_dump([UPLOADS[0][:1]])


@pytest.mark.parametrize("where", [OWN, WORKER])
@pytest.mark.parametrize("scale", CRAFTED_SCALES, ids=repr)
def test_crafted_scales_are_refused_typed_in_every_slice_and_the_pool_stays_in_step(pool, scale, where):
    pooled = pool.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")
    with pytest.raises(TYPED, match=f"client 1's ciphertext {where} (has scale|does not load)"):
        pooled.add(with_blob(UPLOADS[1], where, crafted_scale(scale)), "client 1")
    pooled.add(UPLOADS[2], "client 2")
    assert pooled.dump() == local_dump([UPLOADS[0], UPLOADS[2]])
    assert pool.alive and pool.retired is None


def mutations(blob):
    """Crafted SEAL headers and bodies: every header field, the compressed body's first bytes,
    truncations and extensions (each declares its true size where the header would give it away)."""
    out = []
    for pos in range(16):
        for value in (0x00, 0x01, 0x02, 0x03, 0x10, 0x7F, 0x80, 0xFF):
            if blob[pos] != value:
                out.append(blob[:pos] + bytes([value]) + blob[pos + 1:])
    size = len(blob).to_bytes(8, "little")
    for pos in range(16, 120, 3):
        out.append(blob[:pos] + bytes([blob[pos] ^ 0xFF]) + blob[pos + 1:])
    for cut in (17, 20, 64, len(blob) // 2, len(blob) - 1):
        out.append(blob[:8] + cut.to_bytes(8, "little") + blob[16:cut])
    out.append(blob[:8] + (len(blob) + 64).to_bytes(8, "little") + blob[16:] + bytes(64))
    assert blob[8:16] == size
    return out


def test_crafted_headers_only_ever_raise_typed_errors():
    outcomes = set()
    for blob in mutations(UPLOADS[0][0]):
        try:
            RING.load_ciphertext(blob, seeded=True, what="x")
            outcomes.add("loads")
        except TYPED as exc:
            outcomes.add(type(exc).__name__)
    assert "MalformedMessage" in outcomes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 199), st.integers(0, 255))
def test_a_byte_changed_near_the_front_only_ever_raises_typed_errors(pos, value):
    blob = bytearray(UPLOADS[0][1])
    blob[pos] = value
    try:
        RING.load_ciphertext(bytes(blob), seeded=True, what="x")
    except TYPED:
        pass


def test_crafted_headers_in_either_slice_leave_the_pool_in_step(pool):
    for where in (OWN, WORKER):
        pooled = pool.new_sum(RING, seeded=True)
        accepted = [UPLOADS[0]]
        pooled.add(UPLOADS[0], "client 0")
        for blob in mutations(UPLOADS[1][where])[::4]:
            candidate = with_blob(UPLOADS[1], where, blob)
            try:
                pooled.add(candidate, "client 1")
            except TYPED:
                continue
            accepted.append(candidate)  # it loaded (a flipped coefficient): it is in the sum, as in one process
        pooled.add(UPLOADS[2], "client 2")
        assert pooled.dump() == local_dump([*accepted, UPLOADS[2]])
    assert pool.alive and pool.retired is None


def test_an_untyped_exception_in_this_processs_slice_is_typed_and_the_workers_are_drained(pool, monkeypatch):
    pooled = pool.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")
    real_load = Ring.load_ciphertext

    def load(self, data, **kw):
        if data == UPLOADS[1][3]:
            raise IndexError("SEAL said std::out_of_range")  # not one of the errors the ring catches
        return real_load(self, data, **kw)

    monkeypatch.setattr(Ring, "load_ciphertext", load)
    with pytest.raises(MalformedMessage, match="client 1's ciphertexts 0..15 do not add: IndexError"):
        pooled.add(UPLOADS[1], "client 1")
    monkeypatch.undo()
    pooled.add(UPLOADS[2], "client 2")
    assert pooled.dump() == local_dump([UPLOADS[0], UPLOADS[2]])


# -- out of step: caught by the tags, the pool retired, rounds refused --------------------------------
def fresh_shared_pool():
    pool = ServerPool.shared(2)
    pool.ping()
    return pool


def test_a_stale_reply_is_caught_by_its_tag_and_the_next_round_gets_fresh_workers():
    pool = fresh_shared_pool()
    a, b = pool.new_sum(RING, seeded=True), pool.new_sum(RING, seeded=True)
    a.add(UPLOADS[0], "client 0")
    b.add(UPLOADS[1], "client 1")
    worker = pool.workers[0]
    # A request whose reply nobody reads (what an exception between sending and reading used to
    # leave): written past the pool's bookkeeping, so the next reply read is that one's.
    write_frame(worker.writer, DISCARD, {"token": a.token, "seq": 10**6})
    with pytest.raises(AggregationAborted, match="answered request"):
        a.add(UPLOADS[2], "client 2")
    assert not pool.alive and "answered request" in pool.retired
    for pooled in (a, b):  # both rounds had slices in the retired workers: refused, not mixed
        with pytest.raises(AggregationAborted):
            pooled.dump()
    fresh = ServerPool.shared(2)
    assert fresh is not pool and fresh.alive
    again = fresh.new_sum(RING, seeded=True)
    for blobs in UPLOADS:
        again.add(blobs, "c")
    assert again.dump() == local_dump(UPLOADS)


def test_a_worker_that_lost_a_round_retires_the_pool_instead_of_answering_wrong():
    pool = fresh_shared_pool()
    pooled = pool.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")
    with pool.lock:  # the worker forgets the round (as a desynchronised pool would make it)
        pool.workers[0].send(DISCARD, {"token": pooled.token})
        assert pool.workers[0].reply() == (None, [])
    with pytest.raises(AggregationAborted, match="WorkerFault"):
        pooled.add(UPLOADS[1], "client 1")
    assert pool.retired is not None and not pool.alive
    fresh = ServerPool.shared(2)
    again = fresh.new_sum(RING, seeded=True)
    again.add(UPLOADS[1], "c")
    assert again.dump() == local_dump(UPLOADS[1:2])


def test_an_interrupted_exchange_retires_the_pool(monkeypatch):
    pool = fresh_shared_pool()
    pooled = pool.new_sum(RING, seeded=True)
    pooled.add(UPLOADS[0], "client 0")

    def interrupted(self, blobs, who):
        raise KeyboardInterrupt  # between sending the workers their slices and reading their replies

    monkeypatch.setattr(CiphertextSum, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pooled.add(UPLOADS[1], "client 1")
    monkeypatch.undo()
    assert pool.retired is not None
    with pytest.raises(AggregationAborted):
        pooled.add(UPLOADS[2], "client 2")
    rnd = Round(301, 2, seed=31)  # the next round, on fresh workers, is exact
    for cid in rnd.updates:
        rnd.upload(cid)
    result = rnd.finish()
    assert rnd.error(result, [0, 1]) < rnd.bound(2)


def test_replies_echo_the_token_and_sequence_number_and_a_gap_is_refused():
    import io

    from he.pool import read_frame
    from he.worker import serve

    frames = io.BytesIO()
    write_frame(frames, DISCARD, {"token": 5, "seq": 1})
    write_frame(frames, DISCARD, {"token": 6, "seq": 2})
    write_frame(frames, DISCARD, {"token": 6, "seq": 4})  # request 3 went missing
    frames.seek(0)
    out = io.BytesIO()
    serve(frames, out)
    out.seek(0)
    replies = [read_frame(out) for _ in range(3)]
    assert [(r[0], r[1]["token"], r[1]["seq"]) for r in replies] == [(b"K", 5, 1), (b"K", 6, 2), (b"E", 6, 4)]
    assert replies[2][1]["kind"] == "WorkerFault" and "out of sequence" in replies[2][1]["text"]


# -- isolation of the workers ----------------------------------------------------------------------
PLANTED = {
    "he": {"he/__init__.py": "open(__file__ + '.ran', 'w').close()\n", "he/worker.py": "raise SystemExit(3)\n"},
    "tenseal": {"tenseal.py": "open(__file__ + '.ran', 'w').close()\n"},
    "privagg": {"privagg/__init__.py": "open(__file__ + '.ran', 'w').close()\n"},
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_workers_do_not_import_code_from_the_servers_working_directory(tmp_path, monkeypatch, planted):
    for name, text in PLANTED[planted].items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), *sys.path])  # as a server started there might have
    pool = ServerPool(2)
    try:
        pooled = pool.new_sum(RING, seeded=True)
        for blobs in UPLOADS[:2]:
            pooled.add(blobs, "c")
        assert pooled.dump() == local_dump(UPLOADS[:2])
    finally:
        pool.close()
    assert not list(tmp_path.rglob("*.ran")), "a worker ran code from the server's working directory"


def test_the_worker_path_has_no_working_directory_and_no_relative_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", ".", "relative/dir", str(tmp_path), *sys.path])
    path = worker_path()
    root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["he.pool"].__file__)))
    assert path[0] == root
    assert "" not in path and str(tmp_path) not in path and all(os.path.isabs(p) for p in path)


def test_workers_start_in_isolated_mode(pool):
    with open(f"/proc/{pool.workers[0].pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert argv[1] == b"-I" and b"-m" not in argv
    assert os.readlink(f"/proc/{pool.workers[0].pid}/cwd") == os.sep
    path = json.loads(argv[4])  # the path comes as data, the package root first
    assert path == worker_path() and "" not in path


# -- descriptors -----------------------------------------------------------------------------------
def fd_targets(pid, fds):
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}


def test_the_pools_descriptors_are_not_inherited_by_another_child_of_the_server(pool):
    worker = pool.workers[0]
    ours = fd_targets("self", [worker.shm_fd, worker.writer.fileno(), worker.reader.fileno()])
    assert any("privagg-pool" in t for t in ours)
    probe = textwrap.dedent("""
        import json, os
        out = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                out[fd] = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                pass
        print(json.dumps(out))
    """)
    for close_fds in (False, True):  # e.g. a server's own subprocess.Popen(..., close_fds=False)
        child = subprocess.run([sys.executable, "-c", probe], close_fds=close_fds, capture_output=True,
                               text=True, check=True)
        inherited = set(json.loads(child.stdout).values())
        assert not ours & inherited, f"inherited: {ours & inherited}"


def flags(pid, fd):
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return int(next(line for line in f if line.startswith("flags:")).split()[1], 8)


def test_a_workers_own_descriptors_are_close_on_exec(pool):
    pid = pool.workers[0].pid
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) > 2:
            assert flags(pid, fd) & os.O_CLOEXEC, (fd, os.readlink(f"/proc/{pid}/fd/{fd}"))

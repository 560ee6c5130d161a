import nbformat as nbf
from nbclient import NotebookClient

nb = nbf.v4.new_notebook()
cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s))
code = lambda s: cells.append(nbf.v4.new_code_cell(s))

md("""# Secure aggregation over your own transport

privagg's sessions are *sans-I/O*: they take bytes and give bytes, and never open a socket.
This notebook wires one SecAgg+ round over real TCP connections on 127.0.0.1 with `asyncio`
streams, as a security engineer would over their own transport. One client vanishes in the
middle of the round (after sharing its keys, before sending its masked input), and the server
still gets the exact sum of the others.""")
code("""import asyncio
import struct

import numpy as np

import privagg
from privagg.encoding import sum_mod
from privagg.messages import parse_message
from secagg import SecAgg
from secagg.messages import MaskedInputRequest

N_CLIENTS, N_PARAMS, ROUND = 8, 1_000, 1
DROPS_AT = {5: "masked_input"}          # client 5 stops answering from this stage on
STAGE_DEADLINE = 2.0                    # seconds the server waits for each stage

config = SecAgg(neighbours="auto", dimension=N_PARAMS)  # SecAgg+, every update N_PARAMS long
rng = np.random.default_rng(0)
updates = {cid: rng.uniform(-1, 1, N_PARAMS) for cid in range(N_CLIENTS)}
config.parameters(range(N_CLIENTS))""")
md("""## Framing

A frame is a 4-byte big-endian length and the bytes of one privagg message. The first frame a
client sends is its 8-byte id (in production the transport authenticates clients, e.g. TLS
client certificates; privagg then refuses any message whose claimed sender differs).""")
code("""async def send_frame(writer, data: bytes) -> None:
    writer.write(struct.pack(">I", len(data)) + data)
    await writer.drain()


async def read_frame(reader) -> bytes:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    if length > 64 << 20:
        raise ValueError("frame too large")
    return await reader.readexactly(length)""")
md("""## The server

It accepts connections, then runs the DESIGN.md loop: send the stage's messages, collect
replies until everyone answered or the deadline passed, tell the session the deadline passed.
A client whose connection dies simply stops answering: the session counts it as dropped.""")
code("""async def run_server(port_ready: asyncio.Future) -> privagg.AggregationResult:
    connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    everyone_connected = asyncio.Event()

    async def on_connect(reader, writer):
        cid = int.from_bytes(await read_frame(reader), "big")
        connections[cid] = (reader, writer)
        if len(connections) == N_CLIENTS:
            everyone_connected.set()

    tcp = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port_ready.set_result(tcp.sockets[0].getsockname()[1])
    await everyone_connected.wait()

    server = config.server(sorted(connections), round_id=ROUND)
    log = []
    while not server.finished:
        outgoing = server.messages_to_send()
        for cid, msg in outgoing.items():
            await send_frame(connections[cid][1], msg.to_bytes())

        async def collect(cid):
            try:
                data = await read_frame(connections[cid][0])
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the connection died: this client has dropped out
            server.receive(cid, data)  # a typed error here means a bad message, never a crash

        tasks = [asyncio.create_task(collect(cid)) for cid in outgoing]
        done, pending = await asyncio.wait(tasks, timeout=STAGE_DEADLINE)
        for task in pending:
            task.cancel()
        log.append((server.stage, len(outgoing), len(outgoing) - len(server.waiting_for)))
        server.deadline_passed()
    tcp.close()
    for _, writer in connections.values():
        writer.close()
    print("stage              sent  answered")
    for stage, sent, answered in log:
        print(f"{stage:<18} {sent:>4}  {answered:>8}")
    return server.result()""")
md("""## The clients

Each client holds one session and answers whatever the server sends. Client 5 closes its
connection when the masked-input stage begins: it has shared its keys, so the server must
rebuild its mask key from the other clients' shares to remove its pairwise masks.""")
code("""async def run_client(cid: int, port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await send_frame(writer, cid.to_bytes(8, "big"))
    session = config.client(cid, updates[cid], round_id=ROUND)
    try:
        while True:
            data = await read_frame(reader)
            if DROPS_AT.get(cid) == "masked_input" and isinstance(parse_message(data), MaskedInputRequest):
                writer.close()          # vanish mid-round
                return
            reply = session.respond(data)
            await send_frame(writer, reply.to_bytes())
    except (asyncio.IncompleteReadError, ConnectionError):
        pass                            # the server closed the connection: round over
    finally:
        writer.close()


async def main():
    port = asyncio.get_running_loop().create_future()
    server_task = asyncio.create_task(run_server(port))
    await port
    await asyncio.gather(*(run_client(cid, port.result()) for cid in range(N_CLIENTS)))
    return await server_task

result = await main()
print("included:", result.included)
print("dropped: ", result.dropped)""")
md("""## The sum is exact

The aggregate equals, bit for bit, the sum of the survivors' encoded inputs, and it is within
the quantization bound of their float sum. The server never saw an individual update: its view
holds public keys, encrypted shares and masked vectors.""")
code("""encoding = config.encoding
survivors = list(result.included)
expected = sum_mod([encoding.encode(updates[c]) for c in survivors], encoding.bits, N_PARAMS)
assert 5 not in survivors and len(survivors) == N_CLIENTS - 1
assert np.array_equal(result.encoded, expected)
float_sum = np.sum([updates[c] for c in survivors], axis=0)
print("exact:", np.array_equal(result.encoded, expected))
print("max abs error vs float sum:", np.max(np.abs(result.aggregate - float_sum)))
print("what the server saw:", sorted({type(e.message).__name__ for e in result.view.entries}))""")
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
NotebookClient(nb, timeout=600, kernel_name="python3").execute()
nbf.write(nb, "notebooks/embedding_secagg.ipynb")

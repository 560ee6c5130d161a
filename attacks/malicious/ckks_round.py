"""A CKKS round driven by hand, so that a deviating server can rewrite what it sends.

:class:`CKKSRound` runs the real :mod:`he` sessions (clients, server, the in-process
:class:`~he.decryptor.Decryptor` or the decrypting client) up to the moment the server asks the
key holder to decrypt, and hands the attacker the request it would have sent, the uploads it
holds and a way to put any request in front of the key holder. Nothing here is a mock: every
message is the bytes the real session produced or the bytes the attacker forged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from he import CKKS
from he.config import ADVERTISE, COLLECT, DEAL
from he.messages import Ciphertexts, DecryptedAggregate, DecryptRequest
from he.ring import Ring
from privagg.errors import PrivaggError

__all__ = ["CKKSRound", "honest_updates", "key_holder_of"]


def honest_updates(clients: int, n_values: int, *, seed: int = 0, spread: float = 0.01) -> dict[int, npt.NDArray[Any]]:
    """Model deltas of a typical size (``spread`` of the clip), one per client id ``1..clients``."""
    rng = np.random.default_rng(seed)
    return {cid: rng.uniform(-spread, spread, n_values) for cid in range(1, clients + 1)}


def key_holder_of(config: CKKS) -> str:
    return "the decryptor" if config.key_holder == "decryptor" else "the decrypting client"


@dataclass
class CKKSRound:
    """One round of ``config`` with ``updates`` (client id -> vector), driven to the decrypt request."""

    config: CKKS
    updates: dict[int, npt.NDArray[Any]]
    round_id: int = 1
    uploads: dict[int, Any] | None = None  # client id -> an upload to send instead (a crafted one)
    clients: dict[int, Any] = field(init=False)
    server: Any = field(init=False)
    request: DecryptRequest = field(init=False)
    received: dict[int, Ciphertexts] = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        self.ring = Ring(cfg.params)
        self.server = cfg.server(sorted(self.updates), round_id=self.round_id)
        self.clients = {cid: cfg.client(cid, x, round_id=self.round_id) for cid, x in self.updates.items()}
        self.received = {}
        while self.server.stage in (ADVERTISE, DEAL, COLLECT):
            for cid, msg in self.server.messages_to_send().items():
                reply = self.clients[cid].respond(msg.to_bytes())
                if self.server.stage == COLLECT and self.uploads and cid in self.uploads:
                    reply = self.uploads[cid](self, cid, reply)
                if isinstance(reply, Ciphertexts):
                    self.received[cid] = reply
                self.server.receive(cid, reply.to_bytes())
            self.server.deadline_passed()
        self.request = self.server._request  # the request an honest server sends next

    def finish(self) -> Any:
        """Let the honest server finish the round (the key holder answers its real request)."""
        if self.config.key_holder == "clients":
            for cid, msg in self.server.messages_to_send().items():
                self.server.receive(cid, self.clients[cid].respond(msg.to_bytes()).to_bytes())
        self.server.deadline_passed()
        return self.server.result()

    @property
    def holder_id(self) -> int:
        return self.request.recipient

    def ask_key_holder(self, request: DecryptRequest) -> DecryptedAggregate:
        """Put ``request`` in front of the real key holder (raises what it raises)."""
        if self.config.key_holder == "decryptor":
            assert self.config.decryptor is not None
            return self.config.decryptor.respond(request.to_bytes())
        return self.clients[request.recipient].respond(request.to_bytes())

    def try_key_holder(self, request: DecryptRequest) -> tuple[DecryptedAggregate | None, str | None]:
        try:
            return self.ask_key_holder(request), None
        except PrivaggError as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def upload_ciphertexts(self, cid: int) -> list[Any]:
        """Client ``cid``'s upload as SEAL ciphertexts (what the server holds)."""
        blobs = self.received[cid].ciphertexts
        seeded = self.config.key_holder == "clients"
        return [self.ring.load_ciphertext(blobs[i], seeded=seeded, what="upload") for i in sorted(blobs)]

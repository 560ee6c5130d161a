"""``RunningSum``: the server-side sum of encoded vectors, checked as they arrive.

Every integer-encoding mode (plain, secure aggregation) adds client vectors modulo
``2**bits``. Keeping one running sum instead of every vector is what keeps a server's memory
at O(params); checking each vector's dtype, length and range before adding it is what keeps a
malformed contribution from silently corrupting the sum.
"""

from __future__ import annotations

import numpy as np

from privagg.encoding.modular import add_mod, uint_dtype
from privagg.errors import ProtocolViolation

__all__ = ["RunningSum"]


class RunningSum:
    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.dtype = uint_dtype(bits)
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, client_id: int, vector: np.ndarray) -> None:
        """Check ``vector`` against the others and add it (raises ProtocolViolation, sum unchanged)."""
        bits = self.bits
        if vector.dtype != self.dtype:
            raise ProtocolViolation(
                f"client {client_id} sent {vector.dtype} values; {bits}-bit rounds use {self.dtype}")
        if self.total is not None and vector.shape != self.total.shape:
            raise ProtocolViolation(
                f"client {client_id} sent {vector.shape[0]} values, the others {self.total.shape[0]}")
        if bits not in (32, 64) and vector.size and int(vector.max()) >> bits:
            raise ProtocolViolation(f"client {client_id} sent values outside [0, 2^{bits})")
        if self.total is None:
            self.total = vector.copy()
        else:
            add_mod(self.total, vector, bits)
        self.count += 1

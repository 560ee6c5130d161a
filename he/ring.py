"""The TenSEAL boundary: SEAL objects derived from public parameters, and the packing of floats.

Every party builds the same :class:`Ring` from :class:`~he.params.CKKSParameters` alone: the
``SEALContext``, the CKKS encoder and the evaluator. None of them holds a key, which is what
lets the server hold a ``Ring`` and nothing else. We use ``tenseal.sealapi`` (SEAL's own API)
rather than TenSEAL's tensors because only it exposes seeded symmetric ciphertexts and lets a
whole update fill every slot of a few ciphertexts; it also prints nothing on stdout.

Packing: the flat update is cut into chunks of ``N`` values, and each chunk becomes ``N/2``
complex slots ``x[2i] + 1j*x[2i+1]`` (the canonical embedding is complex, so the imaginary
parts are free capacity). The last chunk is padded with zeros.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import tenseal.sealapi as seal

from he.memfile import MemoryFile
from he.params import CKKSParameters
from he.serialization import body_bound, check_seal_blob
from privagg.errors import ConfigurationError, InsecureParameters, MalformedMessage, ProtocolViolation

__all__ = ["Ring", "seal"]

_RINGS: dict[tuple[int, tuple[int, ...]], tuple[Any, Any, Any]] = {}
_SEED_INFO_BYTES = 128  # SEAL's serialized PRNG info (type + 512-bit seed) with slack


def _context_for(n: int, bits: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """SEALContext, encoder and evaluator for a ring, built once per process (they hold no keys)."""
    key = (n, bits)
    if key not in _RINGS:
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(n)
        try:
            parms.set_coeff_modulus(seal.CoeffModulus.Create(n, list(bits)))
        except (ValueError, RuntimeError) as exc:
            raise ConfigurationError(f"SEAL cannot find primes of {list(bits)} bits for N={n}: {exc}") from None
        context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not context.parameters_set():
            error = context.parameters_error_message()
            cls = InsecureParameters if "secur" in error else ConfigurationError
            raise cls(f"SEAL refuses N={n}, coefficient modulus {list(bits)}: {error}")
        _RINGS[key] = (context, seal.CKKSEncoder(context), seal.Evaluator(context))
    return _RINGS[key]


def describe_scale(scale: float) -> str:
    """A ciphertext's claimed scale for an error message: any double a crafted header holds
    (negative, zero, NaN, infinite, huge, subnormal), never an exception."""
    if isinstance(scale, float) and math.isfinite(scale) and scale > 0:
        return f"2^{math.log2(scale):.3f}"
    return repr(scale)


class Ring:
    """SEAL's context, encoder and evaluator for one parameter set, plus packing and checked loads."""

    def __init__(self, params: CKKSParameters) -> None:
        self.params = params
        self.context, self.encoder, self.evaluator = _context_for(params.poly_modulus_degree,
                                                                  params.coeff_modulus_bits)
        data = self.context.first_context_data()
        self.parms_id = list(self.context.first_parms_id())
        self.data_moduli = [m.value() for m in data.parms().coeff_modulus()]
        exact = sum(math.log2(q) for q in self.data_moduli) - 1
        if exact < params.log2_half_modulus:  # pragma: no cover - SEAL's primes sit just below 2^b
            raise ConfigurationError(f"SEAL's primes give log2(q/2) = {exact:.4f}, below the assumed "
                                     f"{params.log2_half_modulus:.4f}")
        self.scale = params.scale
        self.slots = params.poly_modulus_degree // 2
        words = params.poly_modulus_degree * len(self.data_moduli)
        self.max_seeded_bytes = body_bound(8 * words + 256 + _SEED_INFO_BYTES)
        self.max_full_bytes = body_bound(16 * words + 256)
        self.file = MemoryFile.shared()

    # -- packing ----------------------------------------------------------------------------------
    def encode(self, values: npt.NDArray[np.float64]) -> list[Any]:
        """One plaintext per ``N`` values (two reals per complex slot), the last one zero-padded."""
        n_ct = self.params.ciphertexts_for(values.shape[0])
        padded = np.zeros(n_ct * self.params.values_per_ciphertext)
        padded[: values.shape[0]] = values
        pairs = padded.reshape(n_ct, self.slots, 2)
        slots = pairs[..., 0] + 1j * pairs[..., 1]
        plaintexts = []
        for row in slots:
            plaintext = seal.Plaintext()
            self.encoder.encode(row.tolist(), self.scale, plaintext)
            plaintexts.append(plaintext)
        return plaintexts

    def decode(self, plaintext: Any) -> npt.NDArray[np.float64]:
        """The ``N`` reals a plaintext carries."""
        slots = np.asarray(self.encoder.decode_complex(plaintext), dtype=np.complex128)
        out = np.empty(2 * slots.shape[0])
        out[0::2], out[1::2] = slots.real, slots.imag
        return out

    # -- serialization ----------------------------------------------------------------------------
    def dump(self, obj: Any) -> bytes:
        """Bytes of a SEAL ciphertext (or seeded ``Serializable``)."""
        return self.file.dump(obj.save)

    def export_parameters(self) -> bytes:
        """SEAL's serialization of the encryption parameters: everything the server holds, and
        all a server-side SEAL context is built from (no key of any kind)."""
        return self.file.dump(self.context.key_context_data().parms().save)

    def load_ciphertext(self, data: bytes, *, seeded: bool, what: str, into: Any = None) -> Any:
        """Load one ciphertext from untrusted bytes; typed errors only, SEAL sees checked bytes.

        ``seeded``: a client upload in symmetric mode (its second polynomial is a seed), which
        bounds its size to one polynomial; otherwise a full two-polynomial ciphertext.
        ``into``: a ciphertext object to reuse (saves an allocation per load).
        """
        check_seal_blob(data, max_bytes=self.max_seeded_bytes if seeded else self.max_full_bytes, what=what)
        ciphertext = into if into is not None else seal.Ciphertext(self.context)
        try:
            self.file.feed(data, lambda path: ciphertext.load(self.context, path))
        except Exception as exc:  # whatever SEAL (C++ behind pybind11) throws on crafted bytes: typed
            raise MalformedMessage(f"{what} does not load as a ciphertext for these parameters: "
                                   f"{type(exc).__name__}: {exc}") from None
        if ciphertext.size() != 2 or not ciphertext.is_ntt_form():
            raise ProtocolViolation(f"{what} has {ciphertext.size()} polynomials (ntt={ciphertext.is_ntt_form()}); "
                                    f"a fresh CKKS ciphertext has 2, in NTT form")
        if list(ciphertext.parms_id()) != self.parms_id:
            raise ProtocolViolation(f"{what} is not at the parameters' top level")
        scale = ciphertext.scale
        if scale != self.scale:  # NaN included (unequal to everything)
            exact = f" (exactly {scale!r}, not {self.scale!r})" if describe_scale(scale) == describe_scale(self.scale) \
                else ""
            raise ProtocolViolation(f"{what} has scale {describe_scale(scale)}, the round uses "
                                    f"2^{self.params.scale_bits_resolved}{exact}")
        return ciphertext

    def __repr__(self) -> str:
        return f"Ring(N={self.params.poly_modulus_degree}, moduli_bits={list(self.params.coeff_modulus_bits)})"

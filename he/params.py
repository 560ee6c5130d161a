"""CKKS parameters for summation: presets, the 128-bit security bound, headroom and noise.

Summation needs no multiplicative depth, so the only things parameters must buy are security,
room for the sum of ``n`` clients, and precision. Everything here is arithmetic on public
numbers (no TenSEAL), so every party derives the same values and the validator can name the
offending one before any key exists.

* **Security.** The HomomorphicEncryption.org standard bounds the total coefficient modulus for
  128-bit classical security with a ternary secret: 27, 54, 109, 218, 438, 881 bits for
  ``N`` = 1024 ... 32768 (SEAL enforces the same table). Over the bound raises
  :class:`InsecureParameters`.
* **Levels.** With more than one prime SEAL keeps the last one as its key-switching "special
  prime" and ciphertexts live on the others; with one prime, ciphertexts use it. Summation never
  key-switches, so the lean presets use one prime: a smaller modulus (more security) and one
  polynomial of ``N`` 8-byte words per ``N`` values.
* **Packing.** Two reals per complex slot (``x[2i] + 1j*x[2i+1]``): ``N`` values per ciphertext.
* **Headroom.** One client's plaintext coefficients are at most ``sqrt(2) * clip * scale`` in
  magnitude (the inverse canonical embedding averages the slots), so ``n`` clients fit when
  ``n * (sqrt(2) * clip * scale + 1/2) + 12 * sigma_n < q/2``. The default scale is the largest
  power of two for which that holds at ``max_clients``, as :class:`privagg.FixedPoint` does.
* **Noise and IND-CPA-D.** A decryption carries the encryption error, which is correlated with
  the secret key: Li and Micciancio (2021) recover the key from raw approximate decryptions of
  known plaintexts. The key holder therefore *noise-floods* what it releases: Gaussian noise
  ``2**flood_bits`` times the standard deviation of the error it hides, then rounds to a grid
  below that noise. ``flood_bits`` defaults to the largest value (at most 40) that keeps the
  released error's standard deviation at ``2**-23 * sqrt(n) * clip`` or less, i.e. far below the
  1e-6 relative precision target; under :data:`MIN_FLOOD_BITS` the configuration is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

from privagg.errors import ConfigurationError, InsecureParameters

__all__ = [
    "KeyHolder", "Preset", "PRESETS", "CKKSParameters", "HE_STANDARD_MAX_BITS", "MIN_FLOOD_BITS",
    "MAX_FLOOD_BITS", "ERROR_NOISE_STD", "RELEASE_ERROR_BUDGET",
]

KeyHolder = Literal["clients", "decryptor"]
KEY_HOLDERS: tuple[str, ...] = ("clients", "decryptor")

#: Largest total coefficient modulus (bits) with 128-bit classical security, ternary secret
#: (HomomorphicEncryption.org standard, Table 1; SEAL's ``CoeffModulus.MaxBitCount``).
HE_STANDARD_MAX_BITS: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
#: ``N = 1024`` has 512 slots and room for no useful scale: the smallest ring we accept is 2048.
MIN_POLY_MODULUS_DEGREE = 2048
#: SEAL samples encryption errors with this standard deviation.
ERROR_NOISE_STD = 3.2
#: Flooding below this many bits over the error it hides is refused (see the module docstring).
MIN_FLOOD_BITS = 8
#: The default flooding never exceeds this (more buys nothing measurable).
MAX_FLOOD_BITS = 40
#: Released error std per value of the sum, relative to ``sqrt(n) * clip``.
RELEASE_ERROR_BUDGET = 2.0**-23
_PRIME_BITS = (20, 60)  # SEAL's limits for one prime


@dataclass(frozen=True)
class Preset:
    name: str
    poly_modulus_degree: int
    coeff_modulus_bits: tuple[int, ...]
    summary: str


PRESETS: dict[str, Preset] = {
    "lean": Preset("lean", 4096, (60,),
                   "N=4096, one 60-bit prime: 8.05 B/value seeded, 16.03 B/value public-key"),
    "fast": Preset("fast", 8192, (60,),
                   "N=8192, one 60-bit prime: as lean per value, with half as many ciphertexts (a sixth less "
                   "server time on large updates; up to 8191 values of padding)"),
    "compact": Preset("compact", 4096, (52,),
                      "N=4096, one 52-bit prime: about 7.4 B/value seeded (key_holder='clients' only)"),
    "standard": Preset("standard", 8192, (60, 40, 40),
                       "N=8192, [60, 40, 40] as TenSEAL's tutorials and NVIDIA FLARE: 100-bit ciphertexts, "
                       "about 14 B/value seeded, scale and flooding to spare"),
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class CKKSParameters:
    """The public parameters of a CKKS aggregation, validated on construction.

    ``scale_bits`` and ``flood_bits`` of ``None`` are derived (see the module docstring); the
    resolved values are what :attr:`scale_bits_resolved` and :attr:`flood_bits_resolved` give.
    """

    poly_modulus_degree: int
    coeff_modulus_bits: tuple[int, ...]
    key_holder: KeyHolder = "clients"
    clip: float = 1.0
    max_clients: int = 1024
    scale_bits: int | None = None
    flood_bits: int | None = None
    preset: str = "custom"

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if not _is_int(n) or n not in HE_STANDARD_MAX_BITS:
            raise ConfigurationError(f"poly_modulus_degree must be a power of two in [1024, 32768], got {n!r}")
        if n < MIN_POLY_MODULUS_DEGREE:
            raise ConfigurationError(
                f"poly_modulus_degree={n} gives too few slots ({n // 2}) and at most "
                f"{HE_STANDARD_MAX_BITS[n]} modulus bits: no room for a scale; use at least {MIN_POLY_MODULUS_DEGREE}")
        bits = self.coeff_modulus_bits
        if not isinstance(bits, tuple) or not bits or not all(_is_int(b) for b in bits):
            raise ConfigurationError(f"coeff_modulus_bits must be a non-empty tuple of integers, got {bits!r}")
        for b in bits:
            if not _PRIME_BITS[0] <= b <= _PRIME_BITS[1]:
                raise ConfigurationError(f"coefficient modulus prime of {b} bits outside SEAL's [20, 60]")
        total, bound = sum(bits), HE_STANDARD_MAX_BITS[n]
        if total > bound:
            raise InsecureParameters(
                f"coefficient modulus of {total} bits {list(bits)} exceeds the 128-bit security bound of "
                f"{bound} bits for poly_modulus_degree={n}")
        if self.key_holder not in KEY_HOLDERS:
            raise ConfigurationError(f"key_holder must be 'clients' or 'decryptor', got {self.key_holder!r}")
        if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)) or not (
                math.isfinite(self.clip) and self.clip > 0):
            raise ConfigurationError(f"clip must be a positive finite number, got {self.clip!r}")
        if not _is_int(self.max_clients) or self.max_clients < 1:
            raise ConfigurationError(f"max_clients must be a positive integer, got {self.max_clients!r}")
        if self.scale_bits is not None:
            if not _is_int(self.scale_bits) or not 1 <= self.scale_bits <= 120:
                raise ConfigurationError(f"scale_bits must be an integer in [1, 120], got {self.scale_bits!r}")
            self.check_capacity(self.max_clients)
        elif self.auto_scale_bits() < 20:
            raise ConfigurationError(
                f"a {self.data_modulus_bits}-bit ciphertext modulus leaves a scale of only "
                f"2^{self.auto_scale_bits()} for max_clients={self.max_clients} and clip={self.clip:g}: "
                f"use a larger modulus or fewer clients")
        if self.flood_bits is not None:
            if not _is_int(self.flood_bits) or not 0 <= self.flood_bits <= 64:
                raise ConfigurationError(f"flood_bits must be an integer in [0, 64], got {self.flood_bits!r}")
            if self.flood_bits < MIN_FLOOD_BITS:
                raise InsecureParameters(
                    f"flood_bits={self.flood_bits}: released decryptions must be flooded by at least "
                    f"{MIN_FLOOD_BITS} bits over the decryption error (IND-CPA-D)")
            if self.release_error_ratio(self.flood_bits) > RELEASE_ERROR_BUDGET:
                raise ConfigurationError(
                    f"flood_bits={self.flood_bits} with scale 2^{self.scale_bits_resolved} gives a released error "
                    f"of {self.release_error_ratio(self.flood_bits):.3g} x sqrt(n) x clip per value, above the "
                    f"budget of 2^-23: lower flood_bits or raise the scale")
        elif self.auto_flood_bits() < MIN_FLOOD_BITS:
            raise InsecureParameters(
                f"with key_holder={self.key_holder!r}, scale 2^{self.scale_bits_resolved} cannot flood the "
                f"decryption error by {MIN_FLOOD_BITS} bits within the error budget (only "
                f"{self.auto_flood_bits()} bits): use a larger coefficient modulus (preset 'lean')")

    @classmethod
    def from_preset(cls, preset: str, **overrides: object) -> CKKSParameters:
        if preset not in PRESETS:
            raise ConfigurationError(f"unknown CKKS preset {preset!r}; presets: {', '.join(PRESETS)}")
        p = PRESETS[preset]
        values: dict[str, object] = {"poly_modulus_degree": p.poly_modulus_degree,
                                     "coeff_modulus_bits": p.coeff_modulus_bits, "preset": preset}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values["coeff_modulus_bits"], list):
            values["coeff_modulus_bits"] = tuple(values["coeff_modulus_bits"])  # type: ignore[arg-type]
        if overrides.get("poly_modulus_degree") is not None or overrides.get("coeff_modulus_bits") is not None:
            values["preset"] = f"{preset}+custom"
        return cls(**values)  # type: ignore[arg-type]

    # -- the ring and its levels ------------------------------------------------------------------
    @property
    def data_primes_bits(self) -> tuple[int, ...]:
        """Bit sizes of the primes ciphertexts live on (all but SEAL's special prime)."""
        bits = self.coeff_modulus_bits
        return bits if len(bits) == 1 else bits[:-1]

    @property
    def data_modulus_bits(self) -> int:
        return sum(self.data_primes_bits)

    @property
    def log2_half_modulus(self) -> float:
        """A lower bound on log2(q/2): SEAL's b-bit primes lie just below 2^b (checked against SEAL)."""
        return self.data_modulus_bits - 1 - 1e-3 * len(self.data_primes_bits)

    @property
    def values_per_ciphertext(self) -> int:
        """Two reals per complex slot: N values in each ciphertext."""
        return self.poly_modulus_degree

    def ciphertexts_for(self, n_values: int) -> int:
        return max(1, -(-n_values // self.values_per_ciphertext))

    # -- noise ------------------------------------------------------------------------------------
    def error_std_per_client(self) -> float:
        """Std of one client's decryption error per coefficient (encryption error + encoding rounding).

        Symmetric (seeded) encryption adds one Gaussian error; public-key encryption adds
        ``e1 + e2*s - e*u`` with ternary ``s, u``: variance ``sigma^2 (1 + 4N/3)``.
        """
        sigma2 = ERROR_NOISE_STD**2
        if self.key_holder == "decryptor":
            sigma2 *= 1 + 4 * self.poly_modulus_degree / 3
        return math.sqrt(sigma2 + 1 / 12)

    def error_std(self, clients: int) -> float:
        return math.sqrt(max(clients, 1)) * self.error_std_per_client()

    def slot_std(self, coefficient_std: float) -> float:
        """Std of each released real value for i.i.d. coefficient noise of ``coefficient_std``."""
        return coefficient_std * math.sqrt(self.poly_modulus_degree / 2) / 2.0**self.scale_bits_resolved

    # -- scale and headroom -----------------------------------------------------------------------
    def auto_scale_bits(self) -> int:
        n = self.max_clients
        room = 2.0**self.log2_half_modulus - 12 * self.error_std(n) - n / 2
        if room <= 0:
            return 0
        return int(math.floor(math.log2(room / (n * math.sqrt(2) * self.clip))))

    @property
    def scale_bits_resolved(self) -> int:
        return self.scale_bits if self.scale_bits is not None else self.auto_scale_bits()

    @property
    def scale(self) -> float:
        return 2.0**self.scale_bits_resolved

    def headroom_bits(self, clients: int) -> float:
        """log2 of (q/2) over the largest possible sum of ``clients`` contributions."""
        worst = clients * (math.sqrt(2) * self.clip * self.scale + 0.5) + 12 * self.error_std(clients)
        return self.log2_half_modulus - math.log2(worst)

    def check_capacity(self, clients: int) -> None:
        """Refuse a round whose sum could wrap around the ciphertext modulus."""
        if self.headroom_bits(clients) <= 0:
            raise ConfigurationError(
                f"scale 2^{self.scale_bits_resolved} leaves no headroom for {clients} clients with clip "
                f"{self.clip:g} in a {self.data_modulus_bits}-bit ciphertext modulus "
                f"({self.headroom_bits(clients):.2f} bits): lower scale_bits or clip, or use a larger modulus")

    # -- flooding ---------------------------------------------------------------------------------
    def release_error_ratio(self, flood_bits: int) -> float:
        """Released error std per value of the sum, relative to ``sqrt(n) * clip`` (independent of n)."""
        per_client = self.error_std_per_client() * math.sqrt(1 + 4.0**flood_bits)
        return self.slot_std(per_client) / self.clip

    def auto_flood_bits(self) -> int:
        base = self.slot_std(self.error_std_per_client()) / self.clip
        bits = int(math.floor(math.log2(RELEASE_ERROR_BUDGET / base))) if base > 0 else MAX_FLOOD_BITS
        return min(MAX_FLOOD_BITS, bits)

    @property
    def flood_bits_resolved(self) -> int:
        return self.flood_bits if self.flood_bits is not None else self.auto_flood_bits()

    def release_noise_std(self, clients: int) -> float:
        """Std of the Gaussian noise the key holder adds to each released value of a ``clients``-sum."""
        return self.slot_std(self.error_std(clients) * 2.0**self.flood_bits_resolved)

    def natural_error_std(self, clients: int) -> float:
        """Std of the decryption error of each value of a ``clients``-sum before flooding."""
        return self.slot_std(self.error_std(clients))

    # -- identity ---------------------------------------------------------------------------------
    def describe(self) -> dict[str, object]:
        return {
            "preset": self.preset, "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_modulus_bits": list(self.coeff_modulus_bits), "key_holder": self.key_holder,
            "clip": float(self.clip), "scale_bits": self.scale_bits_resolved,
            "flood_bits": self.flood_bits_resolved, "packing": "complex-pairs",
        }

    @property
    def digest(self) -> bytes:
        """SHA-256 of everything two parties must agree on (sent in every request)."""
        canonical = dict(self.describe())
        canonical.pop("preset")
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(b"privagg-he/params/v1\x00" + text.encode()).digest()

"""What a key holder does before anything decrypted leaves its hands.

A CKKS decryption is ``sum + e``, where the error ``e`` is a function of the secret key and
the encryption randomness. Released raw, it lets anyone who knows the plaintexts solve for the
key (Li and Micciancio, "On the Security of Homomorphic Encryption on Approximate Numbers",
EUROCRYPT 2021): in ``key_holder="decryptor"`` mode a server colluding with every contributor
knows the plaintexts, so raw release would hand it the decryptor's key and with it every other
round. So the key holder:

1. decrypts only a request naming at least ``min_clients`` contributors, once (the caller keeps
   the ledger), and checks that every decrypted value is within ``n * clip`` plus the error
   bound: anything else is not a sum of ``n`` well-formed updates (a forged or corrupted
   aggregate, or a client that escaped its clip) and nothing is released;
2. **noise-floods**: adds Gaussian noise ``2**flood_bits`` times the standard deviation of the
   decryption error it hides (:mod:`he.params` explains the default), from a keystream the
   receiver cannot predict (:mod:`he.noise`). Noise in the slot domain is noise in the
   coefficient domain: the canonical embedding is orthogonal up to the factor ``sqrt(N/2)``;
3. **rounds** to a power-of-two grid sixteen times finer than that noise, so the float64 bits
   below it (which carry only noise, and a floating-point fingerprint) are not released.

Flooding is chosen over rounding alone because rounding leaks the error's sign whenever the
sum sits near a grid point, which colluding clients can arrange. The flood is a margin, not a
proof: provable IND-CPA-D security needs ``flood_bits`` near 40 and beyond, which the
``standard`` preset reaches (see the README's threat model).

The flood is sized from an *estimate* (the std of an honest sum's error: fresh, independent
encryption errors), not from a worst-case bound of the released computation (Li, Micciancio,
Schultz and Sorrell 2022). Measured with :func:`he.bench.flood_margin` (10 clients, 8192
values), the estimate is within 3 % of the measured std and the flood sits above the measured
*maximum* error by 15.0 bits (lean, clients; 17 flood bits), 8.6 (lean, decryptor; 11), 14.9
(fast, clients; 17), 7.6 (fast, decryptor; 10), 7.2 (compact; 9). With ``standard`` the RLWE
error (estimated 2e-24) is below float64's resolution of the decoded values (7e-16), so the
measurable margin is 9.8 bits (clients) and 16.5 (decryptor) over that. A crafted ciphertext
is outside any such bound: that is why only sums of signed uploads are released
(:mod:`he.binding`). An error message never quotes an unflooded value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from he.messages import DecryptedAggregate, DecryptRequest, ciphertext_blobs
from he.noise import gaussian
from he.ring import Ring, seal
from privagg.errors import ProtocolViolation
from privagg.messages import SERVER_ID

__all__ = ["release_sum", "decrypt_values"]


def decrypt_values(ring: Ring, decryptor: Any, ciphertexts: list[Any]) -> npt.NDArray[np.float64]:
    """Raw decryption of packed ciphertexts, padding included: for the key holder's own use
    (checks, audits of what colluders learn), never released as is."""
    plaintext = seal.Plaintext()
    chunks = []
    for ciphertext in ciphertexts:
        decryptor.decrypt(ciphertext, plaintext)
        chunks.append(ring.decode(plaintext))
    return np.concatenate(chunks)


def release_sum(ring: Ring, decryptor: Any, request: DecryptRequest, *, sender: int,
                ciphertexts: list[Any] | None = None) -> DecryptedAggregate:
    """Decrypt, check, flood and round the aggregate (see the module docstring): ``ciphertexts``,
    the sum the key holder recomputed from the signed uploads (:func:`he.binding.verified_sum`),
    or else (an unauthenticated configuration) the request's own aggregate.

    The caller has already checked the round, the parameters, the key and ``min_clients``.
    """
    params = ring.params
    contributors = len(request.contributors)
    if request.n_values < 1:
        raise ProtocolViolation("the aggregate to decrypt is empty")
    if ciphertexts is None:
        blobs = ciphertext_blobs(request.ciphertexts, params.ciphertexts_for(request.n_values), "the server")
        ciphertexts = [ring.load_ciphertext(blob, seeded=False, what=f"aggregate ciphertext {i}")
                       for i, blob in enumerate(blobs)]
    values = decrypt_values(ring, decryptor, ciphertexts)  # padding included: it must decrypt to ~0 too
    bound = contributors * params.clip * (1 + 1e-9) + 12 * params.natural_error_std(contributors) + 1e-12
    worst = float(np.max(np.abs(values)))
    if not math.isfinite(worst) or worst > bound:
        # The unflooded maximum is never quoted: it is a raw decryption (it would leak x[0] or e).
        raise ProtocolViolation(
            f"the decrypted aggregate exceeds the bound {bound:.3g} for {contributors} clients with clip "
            f"{params.clip:g}: it is not a sum of well-formed updates; nothing is released")
    std = params.release_noise_std(contributors)
    noisy = values[: request.n_values] + gaussian(request.n_values, std)
    grid = 2.0 ** (math.floor(math.log2(std)) - 4)
    released = np.round(noisy / grid) * grid
    return DecryptedAggregate(request.round_id, sender, SERVER_ID, request.contributors, released, std)

"""Registry factory for mode ``ckks`` (entry point ``he.modes:make_ckks``)."""

from __future__ import annotations

from typing import Any

from he.config import CKKS
from privagg.errors import ConfigurationError

__all__ = ["make_ckks", "OPTIONS"]

#: The options ``make_ckks`` (and so ``privagg simulate -o KEY=VALUE``) accepts.
OPTIONS = frozenset({"preset", "key_holder", "clip", "max_clients", "min_clients", "scale_bits", "flood_bits",
                     "poly_modulus_degree", "coeff_modulus_bits", "keep_ciphertexts", "server_processes",
                     "roster", "identities", "authenticated", "identity_dir", "dealer",
                     "decryptor_identity"})


def make_ckks(**options: Any) -> CKKS:
    """``CKKS(**options)``; unknown options are refused by name. ``coeff_modulus_bits`` may be
    given as ``"60,40,40"`` (what the command line passes)."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigurationError(f"unknown option(s) for mode 'ckks': {sorted(unknown)}; "
                                 f"options: {sorted(OPTIONS)}")
    bits = options.get("coeff_modulus_bits")
    if isinstance(bits, (str, int)):
        try:
            options["coeff_modulus_bits"] = tuple(int(b) for b in str(bits).split(","))
        except ValueError:
            raise ConfigurationError(f"coeff_modulus_bits must be integers like 60,40,40, got {bits!r}") from None
    return CKKS(**options)

"""he: CKKS homomorphic aggregation on TenSEAL (``tenseal.sealapi``), with explicit key roles.

The server adds ciphertexts it cannot decrypt. ``key_holder="clients"``: the clients share a
secret key and upload seeded symmetric ciphertexts (about 8 bytes a value); ``"decryptor"``: a
separate decryptor party holds the key and clients encrypt to its public key. Either way the
key holder decrypts only the sum, once a round, and noise-floods what it releases (IND-CPA-D).
Registered as mode ``ckks``; see ``he.config.CKKS``.
"""

from he.config import CKKS, COLLECT, DECRYPT, STAGES
from he.decryptor import DECRYPTOR_ID, Decryptor
from he.distribution import unwrap_shared_key, wrap_shared_key
from he.errors import KeyRoleError
from he.keys import DecryptorKeys, PublicKey, SharedKey
from he.params import PRESETS, CKKSParameters

__all__ = [
    "CKKS", "CKKSParameters", "PRESETS", "STAGES", "COLLECT", "DECRYPT", "SharedKey", "DecryptorKeys",
    "PublicKey", "Decryptor", "DECRYPTOR_ID", "KeyRoleError", "wrap_shared_key", "unwrap_shared_key",
]

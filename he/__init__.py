"""he: CKKS homomorphic aggregation on TenSEAL (``tenseal.sealapi``), with explicit key roles.

The server adds ciphertexts it cannot decrypt. ``key_holder="clients"``: the clients share a
secret key and upload seeded symmetric ciphertexts (about 8 bytes a value); ``"decryptor"``: a
separate decryptor party holds the key (a fresh key pair per round) and clients encrypt to its
public key. Either way every upload is signed with the client's roster identity, the key holder
releases only the sum it recomputed from signed uploads of its own session, once a round
(:mod:`he.binding`), and noise-floods what it releases (IND-CPA-D).
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

"""The one error ``he`` adds to privagg's hierarchy: a party acting outside its key role."""

from __future__ import annotations

from privagg.errors import ProtocolViolation

__all__ = ["KeyRoleError"]


class KeyRoleError(ProtocolViolation, TypeError):
    """A party tried an operation its key role does not allow: a party without the secret key
    asked to decrypt, or an object holding a secret key asked to be pickled or copied.

    It is a :class:`~privagg.errors.ProtocolViolation` (the protocol refuses it) and a
    ``TypeError`` (what ``pickle`` and ``copy`` callers expect from an object that refuses).
    """

"""Hypothesis strategies that build any registered message from its declared field codecs,
so every message type a mode registers is covered by the wire-format properties."""

import importlib

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privagg.messages import F64, U64, Bool, Bytes, BytesMap, IdList, Text, Vector, message_types

# Register the message types of every mode package that exists.
for _module in ("privagg.plain", "secagg.messages", "he.messages", "dp.messages"):
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as exc:  # a mode without messages (yet)
        if not _module.startswith(exc.name or "?"):
            raise

ids = st.integers(0, 2**64 - 1)


def for_codec(codec):
    if isinstance(codec, U64):
        return ids
    if isinstance(codec, F64):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(codec, Bool):
        return st.booleans()
    if isinstance(codec, Bytes):
        if codec.exact_len is not None:
            return st.binary(min_size=codec.exact_len, max_size=codec.exact_len)
        return st.binary(max_size=min(codec.max_len, 64))
    if isinstance(codec, Text):
        return st.text(st.characters(blacklist_categories=("Cs",)), max_size=min(codec.max_len // 4, 30))
    if isinstance(codec, IdList):
        return st.lists(ids, unique=True, max_size=12).map(lambda v: tuple(sorted(v)))
    if isinstance(codec, BytesMap):
        return st.dictionaries(ids, for_codec(codec.value_codec), max_size=6)
    if isinstance(codec, Vector):
        def arrays(dt):
            elements = None
            if dt.kind == "f":
                elements = st.floats(width=dt.itemsize * 8, allow_nan=False, allow_infinity=False)
            return hnp.arrays(dt, st.integers(0, min(codec.max_len, 64)), elements=elements)
        return st.sampled_from(codec.dtypes).flatmap(arrays)
    raise NotImplementedError(f"no strategy for {type(codec).__name__}: add one here")


def messages(cls):
    fields = {name: for_codec(codec) for name, codec in cls._FIELDS}
    return st.builds(cls, round_id=ids, sender=ids, recipient=ids, **fields)


all_message_types = sorted(message_types().values(), key=lambda c: c.TYPE_ID)
any_message = st.sampled_from(all_message_types).flatmap(messages)


def random_vectors():
    return hnp.arrays(np.uint32, st.integers(1, 30))

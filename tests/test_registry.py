import pytest

import privagg
from privagg import ConfigurationError, Plain, available_modes, make_aggregator, register_mode, unregister_mode


def test_plain_is_registered_and_built_with_options():
    assert "plain" in available_modes()
    assert available_modes()[0] == "plain"
    agg = make_aggregator("plain", bits=16, clip=0.5, scale=64.0, min_clients=2)
    assert isinstance(agg, Plain)
    assert (agg.encoding.bits, agg.encoding.clip, agg.encoding.scale, agg.min_clients) == (16, 0.5, 64.0, 2)


def test_unknown_modes_and_options_are_named():
    with pytest.raises(ConfigurationError, match="unknown mode 'nope'; available: plain"):
        make_aggregator("nope")
    with pytest.raises(ConfigurationError, match="threshold"):
        make_aggregator("plain", threshold=3)


def test_runtime_registration_and_lazy_targets():
    register_mode("plain-copy", "privagg.plain:make_plain")
    register_mode("broken", "privagg_no_such_module:make")
    register_mode("not-an-aggregator", lambda **kw: object())
    try:
        assert {"plain-copy", "broken"} <= set(available_modes())
        assert isinstance(make_aggregator("plain-copy"), Plain)
        with pytest.raises(ConfigurationError, match="cannot be loaded"):
            make_aggregator("broken")
        with pytest.raises(ConfigurationError, match="not an Aggregator"):
            make_aggregator("not-an-aggregator")
        with pytest.raises(ConfigurationError):
            register_mode("bad name", "x:y")
    finally:
        for name in ("plain-copy", "broken", "not-an-aggregator"):
            unregister_mode(name)
    assert "plain-copy" not in available_modes()


def test_privagg_does_not_import_the_mode_packages():
    import subprocess
    import sys

    code = ("import sys, privagg, privagg.cli; "
            "print(sorted(m for m in ('secagg', 'he', 'dp', 'attacks', 'torch', 'tenseal', 'flwr')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert privagg.__version__ == "0.1.0"

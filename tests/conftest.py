import os

from hypothesis import HealthCheck, settings

# Property tests run with random examples (so they can find new failures), no per-example
# deadline (CI machines are shared and noisy), and a bounded budget to keep CI short.
settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

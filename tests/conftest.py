import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest
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


@pytest.fixture
def flower_task_identity():
    """Flower stamps messages with the running task's ids; outside a run, set them (and restore)."""
    from flwr.supercore.task_identity import TaskIdentity  # Flower is an optional extra

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture
def load_benchmark():
    """A function importing one of benchmarks/*.py by name (they are scripts, not a package)."""
    folder = str(Path(__file__).resolve().parent.parent / "benchmarks")

    def load(name: str) -> Any:
        sys.path.insert(0, folder)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(folder)

    return load

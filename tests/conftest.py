"""Suite-wide fixtures. Ray starts lazily, once per session, only for tests that request ``ray_runtime``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Before any Ray import starts a runtime: no token auth, no usage reporting, no W&B network access.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["WANDB_MODE"] = "disabled"


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    """One local Ray runtime for the whole session (2 CPUs, no dashboard, 200 MB object store)."""
    import ray

    if ray.is_initialized():  # started by an earlier fixture: share it, leave its shutdown to its owner
        yield
        return
    # address="local": always a fresh runtime, never a cluster someone started with `ray start` on this machine
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False
    )
    yield
    ray.shutdown()

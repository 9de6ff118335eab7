"""A Ray runtime for the Tune tests (module-scoped; same arguments as the suite-wide fixture)."""

import pytest


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()

"""The ingress deployment: the FastAPI app of :func:`serve_app.api.main.create_api` inside a Serve replica.

The replica builds the app at start-up (``__serve_build_asgi_app__``) around a :class:`~serve_app.runtime.RayRuntime`
holding the PolicyServer handle, and runs the reconciler as a background asyncio task (immediately, then every
``reconcile_period_s``), so a restarted ingress first settles the tasks whose jobs died meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlparse

from ray import serve

log = logging.getLogger(__name__)


def job_env(settings: Any, mongodb_uri: str | None) -> dict[str, str]:
    """Environment of a training job: where the database and the artifacts are. A MongoDB URI with a password is
    not passed (job environments are visible in the Ray dashboard): the cluster's own environment must have it."""
    env = {
        "LWMECPS_DATA_DIR": str(settings.data_dir),
        "LWMECPS_STORAGE_ROOT": settings.storage_root,
        "LWMECPS_MONGODB_DB": settings.mongodb_db,
        "LWMECPS_WANDB_MODE": settings.wandb_mode,
        "WANDB_MODE": settings.wandb_mode,
        "PYTHONUNBUFFERED": "1",
    }
    if mongodb_uri and urlparse(mongodb_uri).password is None:
        env["LWMECPS_MONGODB_URI"] = mongodb_uri
    return env


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=200)
@serve.ingress()
class Ingress:
    def __init__(self, policy: Any, args: dict[str, Any], loops: Any = None):
        from serve_app.api.main import create_api
        from serve_app.app import AppArgs
        from serve_app.runtime import RayRuntime
        from serve_app.settings import Settings
        from serve_app.store.client import client_uri, ensure_indexes, get_db

        opts = AppArgs.model_validate(args)
        settings = Settings(**opts.settings)
        db = get_db(settings)
        ensure_indexes(db)
        self.runtime = RayRuntime(
            policy=None if opts.predict_in_ingress else policy,
            storage_root=settings.storage_root,
            job_env=job_env(settings, client_uri()),
            dashboard_address=opts.dashboard_address,
            entrypoint_num_cpus=opts.job_num_cpus,
            predict_in_ingress=opts.predict_in_ingress,
        )
        self._api = create_api(settings, self.runtime)
        self.loops = loops  # the LoopRunner handle: keeps that deployment in the graph (loops go through MongoDB)
        self._reconciler: asyncio.Task | None = None
        if opts.reconcile:
            from serve_app.reconcile import run_periodically

            loop = asyncio.get_event_loop()
            self._reconciler = loop.create_task(run_periodically(db, self.runtime, settings.reconcile_period_s))

    def __serve_build_asgi_app__(self) -> Any:
        return self._api

    def __del__(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()

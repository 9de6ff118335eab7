"""``create_api(settings, runtime) -> FastAPI``: the whole REST API, testable without Ray.

Routers under ``/api/v1`` (auth, users, training, models, deployments, metrics, loops), ``/health``, Prometheus
``/metrics``, ``/docs`` and ``/openapi.json``; error handlers (:mod:`serve_app.api.errors`); the body-size limit,
content-type check and request metrics (:mod:`serve_app.api.middleware`). Start-up ensures the indexes and the
bootstrap admin; shutdown flushes the predict statistics.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pymongo.database import Database
from starlette.concurrency import run_in_threadpool

from serve_app.api import errors
from serve_app.api.deps import UserCache
from serve_app.api.middleware import BodyLimit, RequestMetrics
from serve_app.api.observations import EnvShapes
from serve_app.api.routes import auth, deployments, loops, metrics, models, training, users
from serve_app.observability import Observability
from serve_app.runtime_protocol import Runtime
from serve_app.settings import Settings

log = logging.getLogger("serve_app.api")
API_PREFIX = "/api/v1"


def _startup(settings: Settings, db: Database) -> None:
    from serve_app.security import bootstrap_admin
    from serve_app.store.client import ensure_indexes

    ensure_indexes(db)
    done = bootstrap_admin(db, settings)
    if done.created:
        where = f" (password in {done.password_file})" if done.password_file else ""
        log.info("created the bootstrap admin %r%s", done.username, where)


def create_api(settings: Settings, runtime: Runtime, db: Callable[[], Database] | Database | None = None) -> FastAPI:
    """The API app. ``db``: the database (or a function returning it); default the process's client for
    ``settings`` (:func:`serve_app.store.client.get_db`)."""
    if db is None:
        from serve_app.store.client import get_db

        def get() -> Database:
            return get_db(settings)
    elif isinstance(db, Database):
        database = db

        def get() -> Database:
            return database
    else:
        get = db

    obs = Observability(settings, get)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_startup, settings, get())
        yield
        obs.predict_stats.flush_quietly(get())
        obs.shutdown()

    app = FastAPI(
        title="lwmecps-gym service",
        version="1.0",
        description="Train, deploy and query service-placement policies for mobile-edge Kubernetes clusters.",
        lifespan=lifespan,
    )
    state: Any = app.state
    state.settings, state.runtime, state.db, state.obs = settings, runtime, get, obs
    state.user_cache, state.env_shapes = UserCache(), EnvShapes()
    state.lookups, state.background = deployments.Lookups(), set()
    errors.install(app)
    for module in (auth, users, training, models, deployments, metrics, loops):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(loops.metrics_router, prefix=API_PREFIX)
    app.include_router(metrics.root)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    labels = {id(r): API_PREFIX + r.path for m in (auth, users, training, models, deployments, metrics, loops)
              for r in m.router.routes if isinstance(r, APIRoute)}  # fmt: skip
    app.add_middleware(RequestMetrics, obs=obs, labels=labels)  # outermost: times everything, 413/415 included
    return app

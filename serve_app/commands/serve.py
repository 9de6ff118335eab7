"""``lwmecps serve``: the whole service on this machine, on embedded defaults.

Starts the embedded MongoDB (nx-27017, data in ``<data_dir>/mongo``) unless ``LWMECPS_MONGODB_URI`` is set, a local
Ray runtime with its dashboard (or connects to ``--ray-address``), Ray Serve on ``--host:--port`` with the
``lwmecps`` application (:func:`serve_app.app.build_app`), bootstraps the admin user, prints where the API, its
docs and the Ray dashboard are, and runs until Ctrl-C or SIGTERM; then it removes the application, stops Ray (if it
started it) and the database server.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

from serve_app.commands.common import progress

RAY_DEFAULTS = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the service: REST API on Ray Serve, training as Ray jobs, MongoDB")
    p.add_argument("--host", default=None, help="HTTP host (default: LWMECPS_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: LWMECPS_PORT, 8000)")
    p.add_argument("--data-dir", default=None, help="data directory (default: LWMECPS_DATA_DIR, ~/.lwmecps)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--dashboard-port", type=int, default=8265, help="Ray dashboard port of a local runtime")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray runtime (default: all)")
    p.add_argument(
        "--object-store-mb", type=int, default=1024, help="object store of a local Ray runtime, MiB (default 1024)"
    )
    p.add_argument(
        "--predict-via-replicas",
        action="store_true",
        help="answer predictions from PolicyServer replicas (default: in the ingress replica, one hop fewer)",
    )
    p.set_defaults(func=run)


def _check_port(value: int | None, name: str) -> None:
    if value is not None and not 1 <= value <= 65535:
        raise ValueError(f"{name}: a port is 1..65535, got {value}")


def run(args: argparse.Namespace) -> int:
    _check_port(args.port, "--port")
    _check_port(args.dashboard_port, "--dashboard-port")
    for key, value in RAY_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if args.data_dir:
        os.environ["LWMECPS_DATA_DIR"] = str(args.data_dir)
    from serve_app.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    os.environ.setdefault("WANDB_MODE", settings.wandb_mode)
    stop = threading.Event()
    service = Service(args, settings)
    previous: dict[int, Any] = {}
    try:
        service.start()
        # after ray.init (its driver installs its own SIGTERM handler); Ctrl-C during start-up is a KeyboardInterrupt
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        service.announce()
        while not stop.wait(1.0):
            pass
        print("stopping ...", flush=True)
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class Service:
    """The parts ``lwmecps serve`` starts, in order, and stops in reverse."""

    def __init__(self, args: argparse.Namespace, settings: Any):
        self.args, self.settings = args, settings
        self.host = args.host or settings.host
        self.port = args.port or settings.port
        self.mongo: Any = None
        self.head: Any = None
        self.dashboard: str | None = None
        self.bootstrap: Any = None

    def start(self) -> None:
        from serve_app.settings import get_settings

        if self.settings.mongodb_uri is None:
            from serve_app.store.client import EmbeddedMongo

            progress(f"starting the embedded MongoDB server (data in {self.settings.data_dir / 'mongo'})")
            self.mongo = EmbeddedMongo(self.settings.data_dir / "mongo")
            os.environ["LWMECPS_MONGODB_URI"] = self.mongo.start()  # Ray workers started below inherit it
            get_settings.cache_clear()
            self.settings = get_settings()
        self._bootstrap_admin()
        self._start_ray()
        self._start_serve()

    def _bootstrap_admin(self) -> None:
        from serve_app.security import bootstrap_admin
        from serve_app.store.client import ensure_indexes, get_db

        db = get_db(self.settings)
        ensure_indexes(db)
        self.bootstrap = bootstrap_admin(db, self.settings)

    def _start_ray(self) -> None:
        import ray

        address = self.args.ray_address
        if not address:
            from serve_app.ray_head import RayHead

            progress(f"starting a local Ray head node with its dashboard on 127.0.0.1:{self.args.dashboard_port}")
            self.head = RayHead(
                dashboard_port=self.args.dashboard_port,
                num_cpus=self.args.num_cpus,
                object_store_bytes=self.args.object_store_mb * 1024**2,
                log_file=self.settings.data_dir / "ray-head.log",
            )
            address = self.head.start()
        else:
            progress(f"connecting to Ray at {address}")
        ctx = ray.init(address=address, log_to_driver=False)
        # our own head's dashboard is known; ray.init reads the URL from the GCS and may find it not yet published
        url = self.head.dashboard_url if self.head is not None else (ctx.dashboard_url or "")
        self.dashboard = url if not url or "://" in url else f"http://{url}"

    def _start_serve(self) -> None:
        from ray import serve

        from serve_app.app import APP_NAME, build_app

        progress(f"starting Ray Serve on {self.host}:{self.port} (application {APP_NAME!r})")
        serve.start(http_options={"host": self.host, "port": self.port})
        overrides: dict[str, Any] = {"data_dir": str(self.settings.data_dir)}
        if self.mongo is not None:  # a credential-free local URI: safe in the Serve config
            overrides["mongodb_uri"] = self.settings.mongodb_uri
        app_args = {
            "settings": overrides,
            "dashboard_address": self.dashboard,
            "predict_in_ingress": not self.args.predict_via_replicas,
        }
        serve.run(build_app(app_args), name=APP_NAME, route_prefix="/", blocking=False)
        _wait_healthy(f"http://{self.host}:{self.port}/health", timeout_s=120)

    def announce(self) -> None:
        base = f"http://{self.host}:{self.port}"
        mongo = f"embedded, data in {self.settings.data_dir / 'mongo'}" if self.mongo else "LWMECPS_MONGODB_URI"
        lines = [
            "lwmecps service running (Ctrl-C to stop)",
            f"  API:            {base}/api/v1",
            f"  API docs:       {base}/docs",
            f"  Ray dashboard:  {self.dashboard or '(not available)'}",
            f"  MongoDB:        {mongo}",
            f"  artifacts:      {self.settings.storage_root}",
        ]
        b = self.bootstrap
        if b is not None and b.created:
            where = f"password in {b.password_file}" if b.password_file else "password from LWMECPS_ADMIN_PASSWORD"
            lines.append(f"  admin user:     {b.username} ({where})")
        print("\n".join(lines), flush=True)

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            from ray import serve

            from serve_app.app import APP_NAME

            try:
                if self.head is not None:
                    serve.shutdown()
                else:
                    serve.delete(APP_NAME)
            finally:
                ray.shutdown()
        if self.head is not None:
            self.head.stop()
        from serve_app.store.client import close_client

        close_client()
        if self.mongo is not None:
            self.mongo.stop()


def _wait_healthy(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise OSError(f"the service did not answer {url} within {timeout_s:g} s")

"""A fake of the upstream test-app client API (adeptvin1/lwmecps-testapp ``client/``) on 127.0.0.1.

Implements ``POST /api/manage_group?group_id=&state=start|pause|stop`` and ``GET /api/group_stats?group_id=``
with the upstream ``GroupStats`` shape. Like upstream, per-experiment ``average_latency``/``requests_count`` are
cumulative over the run (successful requests only) and ``avg_latency_1m`` is windowed.

:class:`SimulatedLoad` drives it with the simulator: every ``tick()`` serves one slot of a demand trace with
:class:`envs.sim.SlotModel` under the placement the fake API server actually runs (its ready pods), and adds
each cell's served requests and latency to the experiment playing that cell (one service: the upstream twin).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from envs.sim import SlotModel
from envs.world import World


@dataclass
class Experiment:
    users: int = 0
    interval_s: float = 1.0
    requests: int = 0
    latency_sum: float = 0.0


@dataclass
class FakeTestApp:
    group_id: str = "g1"
    state: str = "pending"
    experiments: dict[str, Experiment] = field(default_factory=dict)
    avg_latency_1m: float = 0.0
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    fail_status: int | None = None
    on_start: Callable[[], None] | None = None

    def stats(self) -> dict[str, Any]:
        exps = {
            k: {"current_users": e.users, "current_interval": e.interval_s, "current_profile_index": 0,
                "total_profiles": 1, "average_latency": e.latency_sum / e.requests if e.requests else 0.0,
                "average_latency_per_interval": 0, "requests_count": e.requests, "success_rate": 1.0}
            for k, e in self.experiments.items()
        }  # fmt: skip
        n = sum(e.requests for e in self.experiments.values())
        mean = sum(e.latency_sum for e in self.experiments.values()) / n if n else 0.0
        return {"state": self.state, "experiments_stats": exps, "total_requests": n, "average_latency": mean,
                "success_rate": 1.0 if n else 0.0, "avg_latency_1m": self.avg_latency_1m,
                "avg_latency_5m": self.avg_latency_1m, "avg_latency_15m": self.avg_latency_1m}  # fmt: skip

    def handle(self, method: str, path: str, q: dict[str, str]) -> tuple[int, Any]:
        self.calls.append((method, path, q))
        if self.fail_status is not None:
            return self.fail_status, {"detail": "injected failure"}
        if q.get("group_id") != self.group_id:
            return 404, {"detail": "Group not found"}
        if method == "POST" and path == "/api/manage_group":
            states = {"start": "running", "pause": "paused", "stop": "completed"}
            if q.get("state") not in states:
                return 400, {"detail": "Invalid state. Use 'start', 'pause' or 'stop'"}
            self.state = states[q["state"]]
            if q["state"] == "start" and self.on_start is not None:
                self.on_start()
            return 200, {"_id": self.group_id, "state": self.state}
        if method == "GET" and path == "/api/group_stats":
            return 200, self.stats()
        return 404, {"detail": "Not Found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    app: FakeTestApp
    lock: threading.Lock

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        url = urlparse(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            code, out = self.app.handle(self.command, url.path, {k: v[0] for k, v in parse_qs(url.query).items()})
        data = json.dumps(out).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle


class FakeTestAppServer:
    def __init__(self, app: FakeTestApp):
        self.app, self.lock = app, threading.Lock()
        handler = type("Handler", (_Handler,), {"app": app, "lock": self.lock})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SimulatedLoad:
    """Plays a demand trace against the fake cluster through the simulator's own slot model."""

    def __init__(
        self, world: World, server: FakeTestAppServer, running: Callable[[], np.ndarray], trace: int | str, start: int
    ):
        if world.n_services != 1:
            raise ValueError("SimulatedLoad: one service (the upstream twin) only")
        self.world, self.server, self.running = world, server, running
        self.trace, self.t = world.demand.trace(trace), start
        self.model = SlotModel(world)
        self.model.reset_state(1)
        self.prev: np.ndarray | None = None
        self.interval = 1.0 / (world.scenario.demand.request_rate * world.mix[0])
        self.ids = [f"exp-{name}" for name in world.node_names]
        server.app.experiments = {i: Experiment(interval_s=self.interval) for i in self.ids}
        server.app.on_start = self.begin

    def begin(self) -> None:
        """The group starts: the slot before the first one ran under the placement the cluster runs now."""
        self.prev = self.running()

    def tick(self, window_s: float) -> None:
        """Serve one slot under the placement the cluster runs now (``window_s`` seconds of requests)."""
        place = self.running()
        prev = place if self.prev is None else self.prev  # (begin() sets it when the group starts)
        users = self.trace[self.t % len(self.trace)]
        res = self.model.evaluate(place[None], users[None], previous=prev[None])
        self.prev, self.t = place, self.t + 1
        served_share = 1.0 - float(res.unserved[0])
        # every served request of the slot has the service's mean latency over its served requests
        timeout = self.world.scenario.latency.timeout_ms
        lat = float(res.service_latency_ms[0, 0])
        served_lat = (lat - (1.0 - served_share) * timeout) / served_share if served_share > 0 else 0.0
        with self.server.lock:
            for cell, exp_id in enumerate(self.ids):
                e = self.server.app.experiments[exp_id]
                e.users = round(float(users[cell]))
                n = round(e.users * window_s / self.interval * served_share)
                e.requests += n
                e.latency_sum += n * served_lat
            self.server.app.avg_latency_1m = lat

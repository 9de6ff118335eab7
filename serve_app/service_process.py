"""``lwmecps serve`` as a child process: start it on free ports, wait until it answers, log in, stop it.

For the end-to-end tests and ``bench/serve_predict.py``: the service exactly as a user runs it (its own Ray head,
Serve, the embedded MongoDB), talked to over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from serve_app.ray_head import free_port, terminate

#: environment of a local test/bench service: no auth on Ray, no usage reporting, no W&B network access
QUIET_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "WANDB_MODE": "disabled",
    "LWMECPS_WANDB_MODE": "disabled",  # tasks default to no W&B run (a task may still ask for one)
    "WANDB_BASE_URL": "http://127.0.0.1:9",  # an offline run must not look up W&B's host
}


#: a PPO task that trains in about a second per iteration (testapp-ppo with a small batch and network)
TINY_PPO: dict[str, Any] = {
    "preset": "testapp-ppo",
    "hparams": {"train_batch_size": 200, "minibatch_size": 50, "num_epochs": 1, "fcnet_hiddens": [32, 32]},
}
TERMINAL = ("completed", "failed", "cancelled")


def tiny_task(name: str, iterations: int) -> dict[str, Any]:
    """The request body of a :data:`TINY_PPO` task that stops after ``iterations`` iterations."""
    return {"name": name, **TINY_PPO, "stop": {"training_iteration": iterations}}


def wait_until(check: Any, timeout_s: float, what: str, period_s: float = 0.5) -> Any:
    """Poll ``check()`` until it returns something truthy (returned); TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(period_s)


class ServiceProcess:
    """``lwmecps serve --data-dir <dir>`` with the admin password ``password``; ``base`` is its HTTP root."""

    def __init__(
        self,
        data_dir: Path,
        *,
        password: str = "admin-password-1",
        num_cpus: int = 2,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.password = password
        self.port = free_port()
        self.dashboard_port = free_port()
        self.num_cpus = num_cpus
        self.extra_args = extra_args
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "service.log"
        self._log_start = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, timeout_s: float = 180.0) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LWMECPS_") and k != "MONGODB_URI"}
        env |= QUIET_ENV | {"LWMECPS_ADMIN_PASSWORD": self.password, "LWMECPS_RECONCILE_PERIOD_S": "1"} | self.env
        cmd = [sys.executable, "-m", "serve_app.cli", "serve", "--data-dir", str(self.data_dir)]
        cmd += [
            "--port",
            str(self.port),
            "--dashboard-port",
            str(self.dashboard_port),
            "--num-cpus",
            str(self.num_cpus),
        ]
        cmd += ["--object-store-mb", "300", *self.extra_args]
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()  # a restart appends: look for its announcement after this offset
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout_s
        while not self._announced():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lwmecps serve did not start; log tail:\n{self.log_tail()}")
            time.sleep(0.5)
        return self

    def _announced(self) -> bool:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return b"lwmecps service running" in log.read()
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client logged in as the admin (bearer token); usable with ``with``."""
        r = httpx.post(
            f"{self.base}/api/v1/auth/token", data={"username": "admin", "password": self.password}, timeout=60.0
        )
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return httpx.Client(base_url=self.base, timeout=60.0, headers=headers, **kwargs)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (what Ctrl-C / a supervisor sends), then SIGKILL if it does not end in time."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        terminate(proc, timeout_s)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

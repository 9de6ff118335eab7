"""A Ray head node as a child process (``ray start --head --block``) on free ports, stopped with its process.

``ray.init()`` cannot move the dashboard agent off its fixed default port (52365), so two runtimes on one machine
collide and the second one's job server refuses jobs ("No available agent to submit job"). ``ray start`` takes
every port as an option; ``--block`` ties the node's processes to this child (Ray's reaper stops them when it
exits), so stopping it never touches another Ray runtime on the machine (unlike ``ray stop``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def terminate(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM (what Ctrl-C / a supervisor sends), then SIGKILL if it does not end in ``timeout_s``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RayHead:
    """``start()`` returns the GCS address once the node answers; ``stop()`` terminates it (idempotent)."""

    def __init__(
        self,
        *,
        dashboard_port: int = 8265,
        num_cpus: int | None = None,
        object_store_bytes: int = 1024**3,
        log_file: Path | None = None,
    ):
        self.dashboard_port = dashboard_port
        self.num_cpus = num_cpus
        self.object_store_bytes = object_store_bytes
        self.log_file = log_file
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def command(self) -> list[str]:
        ray = str(Path(sys.executable).parent / "ray")
        cmd = [ray, "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=true"]
        cmd += ["--port", str(self.port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port)]
        for option in ("--dashboard-agent-listen-port", "--ray-client-server-port"):
            cmd += [option, str(free_port())]
        cmd += ["--object-store-memory", str(self.object_store_bytes)]
        if self.num_cpus is not None:
            cmd += ["--num-cpus", str(self.num_cpus)]
        return cmd

    def start(self, timeout_s: float = 90.0) -> str:
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - child keeps it
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,  # Ray's reaper kills its own process group: never ours
        )
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.poll()
                self.stop()
                why = f"exited with status {code}" if code is not None else f"not ready within {timeout_s:g} s"
                raise OSError(f"the Ray head node {why} (log: {self.log_file or 'not kept'})")
            time.sleep(0.5)
        return self.address

    def _ready(self) -> bool:
        import httpx

        try:  # the job server answers once the dashboard (and with it the head's agent) is up
            return httpx.get(f"{self.dashboard_url}/api/version", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        terminate(proc, timeout_s)

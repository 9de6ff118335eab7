"""The MongoDB connection: one :class:`~pymongo.MongoClient` per process, embedded nx-27017 when no URI is set.

With ``Settings.mongodb_uri`` set, :func:`get_client` connects there and starts nothing. Without it, the first
:func:`get_client` starts :class:`EmbeddedMongo` (the ``nx-27017`` MongoDB wire server, a child process with its data
in ``<data_dir>/mongo``) and stops it at exit. A second process on the same data directory (a Ray job, a Serve
replica on this machine) finds the running server through ``<data_dir>/mongo/server.json`` and attaches to it
instead of starting another one on the same files.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from serve_app.settings import Settings, get_settings

SERVER_FILE = "server.json"
LOCK_FILE = "server.lock"
LOG_FILE = "nx-27017.log"
PR_SET_PDEATHSIG = 1

#: collection -> (keys, options) of every index the service relies on
INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    "tasks": [([("status", ASCENDING)], {})],
    "models": [([("type", ASCENDING), ("status", ASCENDING)], {})],
    "metrics": [([("timestamp", ASCENDING)], {})],
    "deployments": [([("model_id", ASCENDING)], {})],
    "users": [([("username", ASCENDING)], {"unique": True})],
    "loops": [([("status", ASCENDING)], {})],
    "decisions": [([("loop_id", ASCENDING), ("timestamp", ASCENDING)], {})],
}
COLLECTIONS = tuple(INDEXES)


class MongoStartError(RuntimeError):
    """The embedded server could not be started or did not answer in time."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _server_executable() -> str:
    """The ``nx-27017`` console script of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "nx-27017"
    if beside.exists():
        return str(beside)
    found = shutil.which("nx-27017")
    if found is None:
        raise MongoStartError("nx-27017 is not installed (pip install nx-27017), and LWMECPS_MONGODB_URI is not set")
    return found


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _ping(uri: str, timeout_s: float) -> bool:
    ms = max(int(timeout_s * 1000), 50)
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, directConnection=True)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedMongo:
    """An ``nx-27017`` server on 127.0.0.1 with its data in ``data_dir`` (a child process of this one).

    ``start()`` returns the URI once a ping succeeds (or raises :class:`MongoStartError` with the log's tail);
    ``stop()`` terminates it (SIGTERM, then SIGKILL). The child also gets SIGTERM when this process dies
    (``PR_SET_PDEATHSIG``), and ``stop()`` runs at interpreter exit and on SIGTERM, so no server outlives us.
    """

    def __init__(self, data_dir: Path | str, host: str = "127.0.0.1", startup_timeout_s: float = 20.0) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.owned = False

    @property
    def uri(self) -> str:
        if self.port is None:
            raise MongoStartError("the embedded MongoDB server is not started")
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> str:
        if self.port is not None:
            return self.uri
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one starter per data directory at a time, across processes
            attached = self._attach()
            if attached is None:
                self._spawn()
        return self.uri

    def _attach(self) -> str | None:
        """Use a server another process already runs on this data directory."""
        try:
            info = json.loads((self.data_dir / SERVER_FILE).read_text())
            host, port, pid = str(info["host"]), int(info["port"]), int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _pid_alive(pid) or not _ping(f"mongodb://{host}:{port}/?directConnection=true", 2.0):
            return None
        self.host, self.port, self.owned = host, port, False
        return self.uri

    def _spawn(self, attempts: int = 3) -> None:
        """Start the server on a free port; retry on a new port when it exits at once (the port was taken)."""
        deadline = time.monotonic() + self.startup_timeout_s
        for attempt in range(1, attempts + 1):
            proc = self._launch(_free_port(self.host))
            if self._answers_before(proc, deadline):
                info = {"host": self.host, "port": self.port, "pid": proc.pid}
                (self.data_dir / SERVER_FILE).write_text(json.dumps(info))
                return
            exited = proc.poll() is not None
            where = f"nx-27017 on {self.host}:{self.port}, data {self.data_dir}"
            self.stop()
            if not exited or attempt == attempts:
                why = f"exited with status {proc.returncode}" if exited else "did not answer"
                raise MongoStartError(
                    f"embedded MongoDB ({where}) {why} within {self.startup_timeout_s:g} s; "
                    f"log tail: {self._log_tail()}"
                )

    def _answers_before(self, proc: subprocess.Popen[bytes], deadline: float) -> bool:
        """Ping until the server answers; the deadline is checked before every ping, so 0 s never succeeds."""
        while proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if _ping(self.uri, min(0.25, remaining)):
                return True
        return False

    def _launch(self, port: int) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / LOG_FILE, "ab")  # noqa: SIM115 - the child keeps it open
        cmd = [_server_executable(), "--data-dir", str(self.data_dir), "--host", self.host, "--port", str(port)]
        cmd += ["--log-file", str(self.data_dir / LOG_FILE), "--pid-file", str(self.data_dir / "nx-27017.pid")]
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent, close_fds=True
            )
        finally:
            log.close()
        self.process, self.port, self.owned = proc, port, True
        _register(self)
        return proc

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the server if this object started it; forget an attached one. Safe to call twice."""
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout_s)
            with contextlib.suppress(OSError):
                info = json.loads((self.data_dir / SERVER_FILE).read_text())
                if info.get("pid") == proc.pid:
                    (self.data_dir / SERVER_FILE).unlink()
        _unregister(self)
        self.port = None
        self.owned = False

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- clean-up of every server this process started -------------------------------------------------------------

_running: set[EmbeddedMongo] = set()
_running_lock = threading.Lock()
_sigterm_installed = False


def _register(server: EmbeddedMongo) -> None:
    global _sigterm_installed
    with _running_lock:
        _running.add(server)
        if not _sigterm_installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True


def _unregister(server: EmbeddedMongo) -> None:
    with _running_lock:
        _running.discard(server)


def stop_all() -> None:
    """Stop every embedded server this process started."""
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


atexit.register(stop_all)


# -- the process-wide client -----------------------------------------------------------------------------------

_client: MongoClient | None = None
_client_key: str | None = None
_embedded: EmbeddedMongo | None = None
_client_lock = threading.Lock()


def _key(settings: Settings) -> str:
    return settings.mongodb_uri or f"embedded:{settings.data_dir / 'mongo'}"


def connect(uri: str, **options: Any) -> MongoClient:
    """A new client with the options the service relies on (UTC-aware datetimes)."""
    return MongoClient(uri, tz_aware=True, appname="lwmecps", **options)


def get_client(settings: Settings | None = None) -> MongoClient:
    """The process's one MongoClient (created on first use; starts the embedded server when no URI is set)."""
    global _client, _client_key, _embedded
    settings = settings or get_settings()
    key = _key(settings)
    with _client_lock:
        if _client is not None:
            if key != _client_key:
                raise RuntimeError(
                    f"this process already has a MongoDB client for {_client_key}; close_client() before using {key}"
                )
            return _client
        if settings.mongodb_uri:
            uri = settings.mongodb_uri
        else:
            _embedded = EmbeddedMongo(settings.data_dir / "mongo")
            uri = _embedded.start()
        _client, _client_key = connect(uri), key
        return _client


def get_db(settings: Settings | None = None) -> Database:
    """The service database (``Settings.mongodb_db``) on the process's client."""
    settings = settings or get_settings()
    return get_client(settings)[settings.mongodb_db]


def client_uri() -> str | None:
    """The URI the process's client uses (hand it to Ray workers as ``LWMECPS_MONGODB_URI``); None before use."""
    if _embedded is not None and _embedded.port is not None:
        return _embedded.uri
    return _client_key if _client is not None else None


def close_client() -> None:
    """Close the process's client and stop the embedded server if this process started it."""
    global _client, _client_key, _embedded
    with _client_lock:
        if _client is not None:
            _client.close()
        if _embedded is not None:
            _embedded.stop()
        _client = _client_key = _embedded = None


def ensure_indexes(db: Database) -> None:
    """Create the service's indexes (idempotent)."""
    for name, indexes in INDEXES.items():
        for keys, options in indexes:
            db[name].create_index(keys, **options)

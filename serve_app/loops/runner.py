"""Running loops: :class:`LoopSupervisor` keeps one thread per active loop document it holds the lease of.

MongoDB is the queue: ``POST /api/v1/loops`` inserts a ``running`` loop, ``POST .../stop`` sets it ``stopping``.
Every ``sync_s`` the supervisor claims (or renews) the lease of each active loop (:func:`serve_app.store.loops.claim`,
one compare-and-set, so two supervisors never drive the same cluster), starts a thread for a loop it newly holds,
and interrupts the wait of a loop asked to stop. A loop thread, every period: renews its lease and re-reads its
status, checks that its deployment still serves, runs one :meth:`Controller.step`, stores the decision and the
cluster's node and pod usage (``metrics.k8s.io`` -> metric points of kind ``cluster``). The period's wait is
``stop.wait(period_s)``, so a stop ends it at once; the decision of that shortened period is still stored (its
change was applied) with ``interrupted: true``, and then the loop is marked ``stopped``. When the supervisor
closes (replica shutdown) it releases its leases without stopping the loops, so another one resumes them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from pymongo.database import Database

from serve_app.loops.build import build_controller, exported_decider
from serve_app.loops.controller import Controller, LoopError
from serve_app.security import decrypt
from serve_app.settings import Settings
from serve_app.store import deployments, metrics
from serve_app.store import loops as store
from serve_app.store.common import now

log = logging.getLogger(__name__)
#: controller factory: (loop document, kubeconfig text, settings, pace) -> Controller
Factory = Callable[[dict[str, Any], str, Settings, Callable[[float], Any]], Controller]


def default_factory(
    loop: dict[str, Any], kubeconfig: str, settings: Settings, pace: Callable[[float], Any]
) -> Controller:
    decide = exported_decider(settings.storage_root, loop["model_id"])
    return build_controller(loop, kubeconfig, decide, pace)


def lease_s(loop: dict[str, Any]) -> float:
    """How long a lease lasts: a whole period (rollout, its rollback, the window) with margin."""
    return float(loop["period_s"]) + 2 * float(loop["rollout_timeout_s"]) + 30.0


class LoopThread(threading.Thread):
    def __init__(
        self, db: Callable[[], Database], loop: dict[str, Any], owner: str, settings: Settings, factory: Factory
    ):
        super().__init__(name=f"loop-{loop['id']}", daemon=True)
        self.db, self.loop, self.owner, self.settings, self.factory = db, loop, owner, settings, factory
        self.stop = threading.Event()  # set: end the current wait (stop requested)
        self.release = threading.Event()  # set: leave the loop to another runner (shutdown)

    def run(self) -> None:
        loop_id, db = self.loop["id"], self.db()
        controller: Controller | None = None
        try:
            kubeconfig = decrypt(store.get_secret(db, loop_id), self.settings)
            controller = self.factory(self.loop, kubeconfig, self.settings, self.stop.wait)
            controller.steps = int(self.loop.get("steps") or 0)
            store.mark(db, loop_id, started_at=now(), adopted=controller.start(), error=None)
            end = self._periods(db, controller)
        except LoopError as err:
            end = ("failed", str(err))
        except Exception as err:  # a loop must end with a reason, never hang as "running"
            log.exception("loop %s failed", loop_id)
            end = ("failed", f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
        finally:
            if controller is not None:
                controller.close()
        if end is None:  # released at shutdown: keep the desired state, let another runner take it
            store.release(db, loop_id, self.owner)
        else:
            store.finish(db, loop_id, end[0], self.owner, error=end[1])

    def _periods(self, db: Database, controller: Controller) -> tuple[str, str | None] | None:
        loop_id = self.loop["id"]
        while not self.release.is_set():
            loop = store.claim(db, loop_id, self.owner, lease_s(self.loop))
            if loop is None or loop["status"] != "running":
                return ("stopped", None) if loop is not None else None
            dep = deployments.get_deployment(db, self.loop["deployment_id"])
            if dep.get("status") != "running":
                return "failed", f"deployment {dep['id']} is {dep.get('status')}: its policy no longer serves"
            decision = controller.step()
            decision["interrupted"] = self.stop.is_set() or self.release.is_set()
            self._metrics(db, controller, decision)
            store.record_decision(db, loop_id, decision)
            if self.loop.get("max_steps") and controller.steps >= int(self.loop["max_steps"]):
                return "completed", None
        return None

    def _metrics(self, db: Database, controller: Controller, decision: dict[str, Any]) -> None:
        """Node and pod usage from metrics.k8s.io, saved as a ``cluster`` metric point (not fatal when missing)."""
        try:
            values = controller.cluster_metrics()
        except Exception as err:  # e.g. no metrics-server, or 403 on metrics.k8s.io
            decision["metrics_error"] = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            return
        metrics.record(db, "cluster", {**values, "loop_id": self.loop["id"], "step": decision["step"]},
                       deployment_id=self.loop["deployment_id"])  # fmt: skip


class LoopSupervisor:
    """Claims active loops and runs each in a :class:`LoopThread` (``start()`` runs :meth:`sync_once` every
    ``sync_s`` in a daemon thread; ``close()`` releases every loop)."""

    def __init__(self, db: Callable[[], Database], settings: Settings, *, owner: str | None = None,
                 sync_s: float = 1.0, factory: Factory = default_factory):  # fmt: skip
        self.db, self.settings, self.sync_s, self.factory = db, settings, sync_s, factory
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.threads: dict[str, LoopThread] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> None:
        db = self.db()
        active = set(store.active_ids(db))
        for loop_id, thread in list(self.threads.items()):
            if not thread.is_alive():
                del self.threads[loop_id]
            elif loop_id not in active or store.get_loop(db, loop_id)["status"] != "running":
                thread.stop.set()
        for loop_id in active - set(self.threads):
            loop = store.claim(db, loop_id, self.owner, 60.0)
            if loop is None:
                continue  # another runner holds it
            if loop["status"] == "stopping":
                store.finish(db, loop_id, "stopped", self.owner)
                continue
            thread = LoopThread(self.db, loop, self.owner, self.settings, self.factory)
            self.threads[loop_id] = thread
            thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self.sync_once()
            except Exception:  # a database hiccup must not end the supervisor
                log.exception("loop supervisor: sync failed")
            self._closed.wait(self.sync_s)

    def start(self) -> LoopSupervisor:
        self._thread = threading.Thread(target=self._run, name="loop-supervisor", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        return {"owner": self.owner, "alive": self.alive(), "loops": sorted(self.threads)}

    def close(self, timeout_s: float = 30.0) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        for thread in self.threads.values():
            thread.release.set()
            thread.stop.set()
        for thread in self.threads.values():
            thread.join(timeout_s)

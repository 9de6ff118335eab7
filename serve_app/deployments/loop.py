"""The loop deployment: one Serve replica hosting the :class:`~serve_app.loops.runner.LoopSupervisor`.

Why a Serve deployment (rather than a detached actor): it is declared in the same Serve config as the API (so a
KubeRay RayService owns it, and ``serve status`` / the dashboard show it), Serve restarts it when it dies or fails
its health check, and it needs no code in the ingress to be created or found. Loops are threads in this replica
(each period is mostly waiting on the cluster and the test-app, so 0 CPUs are reserved). All state is in MongoDB:
a restarted replica resumes every ``running`` loop (after the dead replica's leases expire), and during a rolling
update the leases keep two replicas from driving the same cluster. The ingress holds a handle only to keep the
deployment in the application graph; the API never calls it (start/stop go through the ``loops`` collection).
"""

from __future__ import annotations

from typing import Any

from ray import serve


@serve.deployment(name="LoopRunner", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=8)
class LoopRunner:
    def __init__(self, settings_overrides: dict[str, Any] | None = None, sync_s: float = 2.0):
        from serve_app.loops.runner import LoopSupervisor
        from serve_app.settings import Settings
        from serve_app.store.client import ensure_indexes, get_db

        settings = Settings(**(settings_overrides or {}))
        ensure_indexes(get_db(settings))
        owner = f"LoopRunner:{serve.get_replica_context().replica_id.unique_id}"
        self.supervisor = LoopSupervisor(lambda: get_db(settings), settings, owner=owner, sync_s=sync_s).start()

    async def status(self) -> dict[str, Any]:
        """The supervisor's owner id, whether it runs, and the loops it holds."""
        return self.supervisor.status()

    def check_health(self) -> None:
        if not self.supervisor.alive():
            raise RuntimeError("the loop supervisor thread is not running")

    def __del__(self) -> None:
        self.supervisor.close(timeout_s=10.0)

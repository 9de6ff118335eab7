"""The training job's W&B run: one run per task, logged from the job's driver (offline by default).

The mode is the task's ``wandb.mode`` (set from the service's ``wandb_mode`` when the task was created), else
``LWMECPS_WANDB_MODE`` / ``WANDB_MODE`` of the job, else ``offline``. The run's config is the task's public
training fields only. An API key reaches the job only as ``WANDB_API_KEY`` in the job's runtime environment; W&B
reads it from there in ``online`` mode, and in every other mode it is removed from the process environment before
W&B starts, so it is never written into the run directory. The offline run lives under
``<data_dir>/wandb/<task_id>/wandb/offline-run-*``; :meth:`JobWandb.describe` is what the task records as
``wandb_run``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

PROJECT = "lwmecps-gym"
MODES = ("online", "offline", "disabled")
#: task fields copied into the run's config (never ``secrets``)
CONFIG_FIELDS = ("name", "preset", "algorithm", "env_id", "hparams", "stop", "search_space", "num_samples", "seed")


def wandb_mode(task: Mapping[str, Any]) -> str:
    opts = task.get("wandb") or {}
    mode = opts.get("mode") or os.environ.get("LWMECPS_WANDB_MODE") or os.environ.get("WANDB_MODE") or "offline"
    if mode not in MODES:
        raise ValueError(f"wandb.mode: unknown mode {mode!r} (known: {', '.join(MODES)})")
    return str(mode)


class JobWandb:
    """A started W&B run (see :meth:`start`)."""

    def __init__(self, run: Any, mode: str):
        self._run = run
        self.mode = mode
        self._broken = False

    @classmethod
    def start(cls, task_id: str, task: Mapping[str, Any], data_dir: str | os.PathLike) -> JobWandb | None:
        """Start the task's run; None when its mode is ``disabled``."""
        mode = wandb_mode(task)
        if mode == "disabled":
            return None
        os.environ["WANDB_MODE"] = mode
        if mode != "online":
            os.environ.pop("WANDB_API_KEY", None)
        import wandb

        directory = Path(data_dir).expanduser() / "wandb" / task_id
        directory.mkdir(parents=True, exist_ok=True)
        opts = task.get("wandb") or {}
        run = wandb.init(
            project=opts.get("project") or PROJECT,
            name=str(task.get("name") or task_id),
            group=task_id,
            job_type="train",
            dir=str(directory),
            mode=cast(Literal["online", "offline"], mode),
            config={"task_id": task_id, **{k: task.get(k) for k in CONFIG_FIELDS}},
            settings=wandb.Settings(console="off", x_disable_stats=True, x_disable_machine_info=True),
        )
        return cls(run, mode)

    def describe(self) -> dict[str, Any]:
        """What the task records as ``wandb_run``: id, mode, project, the run directory (and the URL online)."""
        run = self._run
        info = {"id": run.id, "mode": self.mode, "project": run.project, "dir": str(run.settings.sync_dir)}
        if self.mode == "online":
            info["url"] = run.url
        return info

    def log(self, values: Mapping[str, Any], step: int) -> None:
        """Log one step; a broken W&B run (its service process gone, e.g. with the job's process group on
        ``stop_job``) stops the logging, never the training."""
        if self._broken:
            return
        try:
            self._run.log({k: v for k, v in values.items() if v is not None}, step=step)
        except Exception as e:
            self._broken = True
            print(f"W&B logging stopped: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def finish(self, ok: bool) -> None:
        self._run.finish(exit_code=0 if ok else 1)

"""Predict latency and throughput of the service on Ray Serve, beside a bare FastAPI + uvicorn endpoint.

One run measures, for the same exported policy (the default PPO network, 128x128 tanh, on ``testapp-4bs``):

* ``bare``: FastAPI + uvicorn in one process, the export loaded with plain torch (no auth, no database);
* ``serve-default``: ``lwmecps serve --predict-via-replicas``: proxy -> ingress -> handle -> PolicyServer replica;
* ``serve-best``: ``lwmecps serve`` (the policy in the ingress replica, one hop fewer) with
  ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``; also its ``predict_batch`` route (``--batch`` observations per request).

Per variant: latency p50/p99 at a fixed offered rate (``--rate`` req/s, open loop), max throughput with
``--clients`` concurrent keep-alive clients, and (Serve) the p99 of a control-plane GET. Every request goes over
HTTP to 127.0.0.1; request counts are bounded. Writes the ``serve-predict`` block of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from learning import write_section
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "lwmecps/TestApp4BS-v0"


def make_export(out: Path) -> Path:
    """An export of the default PPO policy network for the env (weights as initialised: speed does not depend
    on them)."""
    import gymnasium as gym
    from torch import nn

    import envs  # noqa: F401
    from policies.rllib.export import write_export
    from policies.rllib.layout import layout_of_env

    env = gym.make(ENV_ID)
    layout = layout_of_env(env.observation_space, env.action_space, flat=False)
    net = nn.Sequential(
        nn.Linear(layout.obs_dim, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, layout.mask_dim)
    )
    spaces = {"observation_space": str(env.observation_space), "action_space": str(env.action_space)}
    return write_export(out, net, layout, algorithm="PPO", env_id=ENV_ID, env_config={"traces": ["A"]}, spaces=spaces)


def observation_body() -> dict[str, list[float]]:
    import gymnasium as gym

    import envs  # noqa: F401

    obs, _ = gym.make(ENV_ID).reset(seed=0)
    return {"observations": obs["observations"].tolist(), "action_mask": obs["action_mask"].tolist()}


# -- load generation ---------------------------------------------------------------------------------------------


async def _one(client: httpx.AsyncClient, url: str, body: Any, lat: list[float], errors: list[int]) -> None:
    t = time.perf_counter()
    try:
        r = await client.post(url, json=body)
        ok = r.status_code == 200
    except httpx.HTTPError:
        ok = False
    lat.append(time.perf_counter() - t)
    if not ok:
        errors.append(1)


async def fixed_rate(base: str, url: str, body: Any, headers: dict, rate: float, n: int) -> dict[str, float]:
    """Open loop: request i is due at i / rate seconds; a pool of keep-alive connections sends each when due (or
    as soon as one is free) and its latency counts from when it was due, so falling behind shows in the figures."""
    lat: list[float] = []
    errors: list[int] = []
    conns = 16
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client.post(url, json=body) for _ in range(conns)))  # warm every connection
        t0 = time.perf_counter() + 0.05
        due = iter(range(n))

        async def sender() -> None:
            for i in due:
                start = t0 + i / rate
                if (delay := start - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                try:
                    ok = (await client.post(url, json=body)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append(time.perf_counter() - start)
                if not ok:
                    errors.append(1)

        await asyncio.gather(*(sender() for _ in range(conns)))
    ms = np.array(lat) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "errors": len(errors)}


async def closed_loop(base: str, url: str, body: Any, headers: dict, clients: int, n: int) -> dict[str, float]:
    """``clients`` concurrent clients, ``n`` requests in all, each client sends its next when answered."""
    lat: list[float] = []
    errors: list[int] = []
    per = n // clients

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in range(per):
            await _one(client, url, body, lat, errors)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        await client.post(url, json=body)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"rps": per * clients / wall, "errors": len(errors)}


def get_p99(base: str, path: str, headers: dict, n: int) -> float:
    lat = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.get(path)
        for _ in range(n):
            t = time.perf_counter()
            client.get(path).raise_for_status()
            lat.append(time.perf_counter() - t)
    return float(np.percentile(np.array(lat) * 1000, 99))


class BareObs(BaseModel):
    observations: list[float]
    action_mask: list[float]


# -- the variants --------------------------------------------------------------------------------------------------


def bare_server(port: int, export: str) -> None:
    """``--bare-server``: the same policy behind a minimal FastAPI endpoint on uvicorn."""
    import torch
    import uvicorn
    from fastapi import FastAPI

    from policies.rllib.export import load_export

    torch.set_num_threads(1)
    policy = load_export(export)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: BareObs) -> dict[str, list[int]]:
        batch = {k: np.asarray([v], dtype=np.float32) for k, v in body.model_dump().items()}
        return {"placement": policy.greedy(batch)[0].tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def measure(base: str, url: str, body: Any, headers: dict, args: argparse.Namespace) -> dict[str, float]:
    rate = asyncio.run(fixed_rate(base, url, body, headers, args.rate, args.requests))
    tput = asyncio.run(closed_loop(base, url, body, headers, args.clients, args.requests))
    return {**rate, "rps": tput["rps"], "errors": rate["errors"] + tput["errors"]}


def run_bare(export: Path, body: dict, args: argparse.Namespace) -> dict[str, float]:
    from serve_app.ray_head import free_port
    from serve_app.service_process import wait_until

    port = free_port()
    cmd = [sys.executable, __file__, "--bare-server", str(port), str(export)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.post(f"{base}/predict", json=body).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "bare server")
        return measure(base, "/predict", body, {}, args)
    finally:
        proc.terminate()
        proc.wait(30)


def run_serve(
    name: str, export: Path, body: dict, args: argparse.Namespace, *, extra: tuple[str, ...], env: dict[str, str]
) -> list[tuple[str, dict[str, float]]]:
    """Start ``lwmecps serve``, register and deploy the export, measure predict (and batch), stop."""
    from serve_app.service_process import ServiceProcess

    with (
        tempfile.TemporaryDirectory(prefix="lwmecps-bench-") as tmp,
        ServiceProcess(Path(tmp), extra_args=extra, env=env) as svc,
    ):
        model_id = register(svc, export)
        with svc.client() as api:
            dep = api.post(f"/api/v1/models/{model_id}/deploy").json()["deployment_id"]
            headers = dict(api.headers)
        url = f"/api/v1/deployments/{dep}/predict"
        rows = [(name, measure(svc.base, url, body, headers, args))]
        rows[0][1]["get_p99"] = get_p99(svc.base, f"/api/v1/deployments/{dep}", headers, args.requests // 4)
        if args.batch > 1 and "--predict-via-replicas" not in extra:
            batch_body = {"items": [body] * args.batch}
            row = measure(svc.base, f"/api/v1/deployments/{dep}/predict_batch", batch_body, headers, args)
            row["obs_per_s"] = row["rps"] * args.batch
            rows.append((f"{name} predict_batch x{args.batch}", row))
        return rows


def register(svc: Any, export: Path) -> str:
    """Put the export where training would and register it as a ready model (through the service's database)."""
    import shutil

    from bson import ObjectId

    from serve_app import artifacts
    from serve_app.settings import Settings
    from serve_app.store import models
    from serve_app.store.client import connect

    settings = Settings.explicit(data_dir=svc.data_dir)
    model_id = str(ObjectId())
    shutil.copytree(export, artifacts.export_dir(settings.storage_root, model_id))
    uri = json.loads((svc.data_dir / "mongo" / "server.json").read_text())
    client = connect(f"mongodb://{uri['host']}:{uri['port']}/?directConnection=true")
    meta = {"algorithm": "PPO", "env_id": ENV_ID, "env_config": {"traces": ["A"]}}
    location = artifacts.model_dir(settings.storage_root, model_id)
    models.register_model(
        client[settings.mongodb_db], name="bench", type="ppo", artifact_uri=location, info=meta, model_id=model_id
    )
    client.close()
    return model_id


def table(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> str:
    bare = next(r for n, r in rows if n == "bare")["rps"]
    default = next((r for n, r in rows if n == "serve-default"), {}).get("rps")
    head = (
        f"| variant | p50 ms @ {args.rate:g} req/s | p99 ms @ {args.rate:g} req/s | req/s ({args.clients} clients) "
        "| vs bare | vs serve-default | obs/s | control GET p99 ms | errors |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for name, r in rows:
        vs_default = f"{r['rps'] / default:.2f}x" if default else "-"
        lines.append(
            f"| {name} | {r['p50']:.1f} | {r['p99']:.1f} | {r['rps']:.0f} | {r['rps'] / bare:.0%} | {vs_default} "
            f"| {r.get('obs_per_s', r['rps']):.0f} | {r.get('get_p99', float('nan')):.1f} | {r['errors']:.0f} |"
        )
    over = [n for n, r in rows if r["rps"] < args.rate and "batch" not in n]
    if over:
        lines.append(
            f"\n{', '.join(over)}: under {args.rate:g} req/s at most, so at that offered rate requests queue and the "
            "latency columns are mostly queueing delay."
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-server":
        bare_server(int(sys.argv[2]), sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="offered load of the latency run, req/s")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients of the throughput run")
    ap.add_argument("--requests", type=int, default=1000, help="requests per measurement")
    ap.add_argument("--batch", type=int, default=32, help="observations per predict_batch request")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    body = observation_body()
    with tempfile.TemporaryDirectory() as tmp:
        export = make_export(Path(tmp) / "export")
        rows = [("bare", run_bare(export, body, args))]
        quiet = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}
        rows += run_serve("serve-default", export, body, args, extra=("--predict-via-replicas",), env=quiet)
        fast = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
        rows += run_serve("serve-best", export, body, args, extra=(), env=fast)
    out = table(rows, args)
    print(out)
    if not args.no_doc:
        note = (
            f"{time.strftime('%Y-%m-%d')}, {args.requests} requests per measurement, 2 cores shared by the load "
            "generator and the server (and, here, other work): compare rows of one run, not across runs.\n"
        )
        write_section("serve-predict", note + "\n" + out)


if __name__ == "__main__":
    main()

"""A slot-shared policy network for the placement envs (plain torch, no Ray).

The default RLlib network is one MLP over the whole observation with a separate head per slot: every slot's head
learns from its own slot's experience only, so a station that was quiet in the training days has an untrained
head when it gets busy on another day. :class:`SlotNet` instead applies *one* small MLP to every slot, fed with
that slot's features gathered from the observation (its node's free CPU and RAM, its replicas, the users of its
node's cell, its service's latency, the time of day, a few whole-city aggregates and static service features).
The policy is therefore equivariant to relabelling the stations, learns from every slot's experience at once,
and its size does not grow with the city.

Where a service cannot run in every cell (pinning), a slot also serves users of other cells: then the spec
carries the routing order (``World.order``) and two more features are added, the users of the cells whose nearest
allowed slot is this one (static catchment) and of the cells whose nearest slot *with replicas* is this one (the
current catchment, the routing of ``envs.sim`` without saturation spill), both times the service's share.

Observation layout (``envs.dynamics.Dynamics.observe``): free CPU ``N``, free RAM ``N``, replicas ``K``, users
``N``, service latency ``S``, sin and cos of the time of day.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: dynamic features per slot (see :meth:`SlotNet.features`) + 3 static ones
N_DYNAMIC = 11
N_STATIC = 3


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def slot_spec(world: Any) -> dict[str, Any]:
    """The JSON-able constructor arguments of a :class:`SlotNet` for an ``envs.world.World``."""
    svc, node = world.slot_service, world.slot_node
    static = [
        [
            float(world.mix[s] * world.n_services),
            float(world.svc_rate[s] / world.svc_rate.mean()),
            float(world.svc_cpu[s] / world.node_cpu[n]),
        ]
        for s, n in zip(svc, node, strict=True)
    ]
    nvec = (world.slot_max + 1).astype(int)
    nearest = world.order[:, :, 0]  # (S, C) nearest allowed slot per service and cell
    local = all(node[nearest[s, c]] == c for s in range(world.n_services) for c in range(world.n_nodes))
    routing = {} if local else {"order": world.order.astype(int).tolist()}
    return routing | {
        "n_nodes": int(world.n_nodes),
        "n_services": int(world.n_services),
        "slot_node": [int(n) for n in node],
        "slot_service": [int(s) for s in svc],
        "slot_static": static,
        "nvec": [int(n) for n in nvec],
    }


class SlotNet(nn.Module):
    """``forward(obs) -> logits (B, sum(nvec))`` (the per-slot categoricals concatenated); ``value(obs) -> (B,)``."""

    node: torch.Tensor
    order: torch.Tensor
    service: torch.Tensor
    static: torch.Tensor
    same_service: torch.Tensor
    pick: torch.Tensor

    def __init__(
        self,
        n_nodes: int,
        n_services: int,
        slot_node: Sequence[int],
        slot_service: Sequence[int],
        slot_static: Sequence[Sequence[float]],
        nvec: Sequence[int],
        hiddens: Sequence[int] = (64, 64),
        order: Sequence[Sequence[Sequence[int]]] | None = None,
    ) -> None:
        super().__init__()
        self.spec = {
            "n_nodes": n_nodes,
            "n_services": n_services,
            "slot_node": list(slot_node),
            "slot_service": list(slot_service),
            "slot_static": [list(r) for r in slot_static],
            "nvec": list(nvec),
            "hiddens": list(hiddens),
        } | ({"order": [[list(a) for a in c] for c in order]} if order is not None else {})
        K = len(slot_node)
        if not (len(slot_service) == len(slot_static) == len(nvec) == K):
            raise ValueError("SlotNet: slot_node, slot_service, slot_static and nvec must have one entry per slot")
        self.N, self.S, self.K, self.n_max = n_nodes, n_services, K, max(nvec)
        self.register_buffer("node", torch.as_tensor(list(slot_node), dtype=torch.long), persistent=False)
        self.register_buffer("service", torch.as_tensor(list(slot_service), dtype=torch.long), persistent=False)
        self.register_buffer("static", torch.as_tensor(slot_static, dtype=torch.float32), persistent=False)
        same = torch.as_tensor(list(slot_service))[:, None] == torch.as_tensor(list(slot_service))[None, :]
        self.register_buffer("same_service", same.float() / same.sum(1, keepdim=True), persistent=False)
        pick = [k * self.n_max + j for k, n in enumerate(nvec) for j in range(n)]
        self.register_buffer("pick", torch.as_tensor(pick, dtype=torch.long), persistent=False)
        self.routing = order is not None
        if order is not None:
            o = torch.as_tensor(order, dtype=torch.long)  # (S, C, A) slot ids, padded with K
            if o.shape[:2] != (n_services, n_nodes) or int(o.max()) > K:
                raise ValueError(f"SlotNet: order must be (S, C, A) slot ids <= K, got shape {tuple(o.shape)}")
            self.register_buffer("order", o, persistent=False)
        f = N_DYNAMIC + N_STATIC + (2 if self.routing else 0)
        self.pi = mlp([f, *hiddens, self.n_max])
        self.phi = mlp([f, *hiddens])
        self.vf = nn.Linear(hiddens[-1], 1)

    @property
    def obs_dim(self) -> int:
        return 3 * self.N + self.K + self.S + 2

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, obs_dim) -> (B, K, F)``."""
        N, K, S = self.N, self.K, self.S
        free_cpu, free_ram = obs[:, :N], obs[:, N : 2 * N]
        repl = obs[:, 2 * N : 2 * N + K]
        users = obs[:, 2 * N + K : 3 * N + K]
        lat = obs[:, 3 * N + K : 3 * N + K + S]
        time = obs[:, -2:]
        node_users = users[:, self.node]
        B = obs.shape[0]
        dyn = [
            free_cpu[:, self.node],
            free_ram[:, self.node],
            repl,
            node_users,
            node_users * self.static[:, 0],
            lat[:, self.service],
            repl @ self.same_service.T,  # mean replicas of this slot's service
            users.mean(1, keepdim=True).expand(B, K),
            users.max(1, keepdim=True).values.expand(B, K),
            time[:, :1].expand(B, K),
            time[:, 1:].expand(B, K),
        ]
        if self.routing:
            share = self.static[:, 0]
            dyn += [self._catchment(users, torch.ones_like(repl)) * share, self._catchment(users, repl) * share]
        return torch.cat([torch.stack(dyn, -1), self.static.expand(B, K, N_STATIC)], -1)

    def _catchment(self, users: torch.Tensor, repl: torch.Tensor) -> torch.Tensor:
        """``(B, K)``: users of the cells whose first slot in routing order with ``repl > 0`` is the slot."""
        B = users.shape[0]
        hosted = torch.cat([repl, repl.new_zeros(B, 1)], 1)[:, self.order] > 0  # (B, S, C, A); padding never hosts
        first = hosted & (hosted.cumsum(-1) == 1)
        weight = first * users[:, None, :, None]
        out = users.new_zeros(B, self.K + 1)
        out.scatter_add_(1, self.order.reshape(1, -1).expand(B, -1), weight.reshape(B, -1))
        return out[:, : self.K]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.pi(self.features(obs)).reshape(obs.shape[0], self.K * self.n_max)
        return logits[:, self.pick]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.vf(self.phi(self.features(obs)).mean(1)).squeeze(-1)

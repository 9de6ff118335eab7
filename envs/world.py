"""A scenario made concrete: numpy arrays for nodes, services, deployment slots, latency and routing order.

Terminology used across the package:

* **cell** ``c``: the coverage area of base station ``c`` (cells and nodes share indices, ``C == N``);
* **slot** ``k``: a (service, node) pair where the service may run (its pinning allows that node). The
  action gives a replica count per slot; a slot with ``r > 0`` replicas is one Kubernetes Deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.city import hard_core_points
from envs.demand import DemandModel
from envs.scenario import NodeSpec, Scenario, ScenarioError, ServiceSpec


@dataclass(frozen=True, eq=False)
class World:
    scenario: Scenario
    node_names: list[str]
    node_xy: np.ndarray  # (N, 2) km
    node_cpu: np.ndarray  # (N,) cores
    node_ram: np.ndarray  # (N,) MiB
    service_names: list[str]
    svc_cpu: np.ndarray  # (S,)
    svc_ram: np.ndarray  # (S,)
    svc_rate: np.ndarray  # (S,) requests/s per replica
    svc_max: np.ndarray  # (S,) int
    mix: np.ndarray  # (S,) share of a user's requests per service, sums to 1
    slot_service: np.ndarray  # (K,) int
    slot_node: np.ndarray  # (K,) int
    net_ms: np.ndarray  # (C, N) network latency
    order: np.ndarray  # (S, C, A) slot ids by increasing latency from the cell, padded with K
    order_net: np.ndarray  # (S, C, A) network latency of those slots (0 on padding)
    demand: DemandModel

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_services(self) -> int:
        return len(self.service_names)

    @property
    def n_slots(self) -> int:
        return len(self.slot_service)

    @property
    def slot_max(self) -> np.ndarray:
        return self.svc_max[self.slot_service]

    @property
    def slot_cpu(self) -> np.ndarray:
        return self.svc_cpu[self.slot_service]

    @property
    def slot_ram(self) -> np.ndarray:
        return self.svc_ram[self.slot_service]

    def slot_name(self, k: int) -> str:
        return f"{self.service_names[self.slot_service[k]]}@{self.node_names[self.slot_node[k]]}"


def _nodes(sc: Scenario, rng: np.random.Generator) -> list[NodeSpec]:
    if sc.nodes is not None:
        return list(sc.nodes)
    city = sc.city
    assert city is not None
    try:
        pts = hard_core_points(rng, city.n_nodes, city.area_km, city.min_distance_km)
    except ValueError as err:
        raise ScenarioError(f"scenario.{err}") from None
    cpu = rng.choice(city.cpu_choices, size=city.n_nodes)
    ram = rng.choice(city.ram_choices_mib, size=city.n_nodes)
    return [
        NodeSpec(name=f"bs{i + 1}", x_km=float(x), y_km=float(y), cpu=float(c), ram_mib=float(r))
        for i, ((x, y), c, r) in enumerate(zip(pts, cpu, ram, strict=True))
    ]


def _services(sc: Scenario, rng: np.random.Generator, xy: np.ndarray, names: list[str]) -> list[ServiceSpec]:
    if sc.services is not None:
        return list(sc.services)
    gen = sc.service_gen
    assert gen is not None
    lo, hi = xy.min(0), xy.max(0)
    out = []
    for i in range(gen.n_services):
        home = rng.uniform(lo, hi)
        near = np.argsort(np.hypot(*(xy - home).T))[: gen.nodes_per_service]
        out.append(
            ServiceSpec(
                name=f"svc{i + 1}",
                cpu=float(rng.choice(gen.cpu_choices)),
                ram_mib=float(rng.choice(gen.ram_choices_mib)),
                rate=float(rng.uniform(*gen.rate_range)),
                max_replicas=gen.max_replicas,
                allowed_nodes=[names[j] for j in sorted(near)],
                popularity=float(1.0 / (i + 1) ** gen.zipf_s),
            )
        )
    return out


def _network(sc: Scenario, xy: np.ndarray) -> np.ndarray:
    lat = sc.latency
    if lat.network_latency_ms is not None:
        return np.asarray(lat.network_latency_ms, dtype=np.float64)
    dist = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    net = lat.per_hop_ms + lat.propagation_ms_per_km * dist
    np.fill_diagonal(net, lat.local_ms)
    return net


def build_world(sc: Scenario) -> World:
    """Build the concrete world of a scenario; raises :class:`ScenarioError` on an impossible one."""
    rng = np.random.default_rng([sc.seed, 1])
    nodes = _nodes(sc, rng)
    node_names = [n.name for n in nodes]
    xy = np.array([[n.x_km, n.y_km] for n in nodes], dtype=np.float64)
    services = _services(sc, rng, xy, node_names)
    index = {name: i for i, name in enumerate(node_names)}
    slot_service, slot_node = [], []
    for s, svc in enumerate(services):
        allowed = svc.allowed_nodes if svc.allowed_nodes is not None else node_names
        for node in allowed:
            if node not in index:
                known = ", ".join(node_names) if len(node_names) <= 8 else f"{node_names[0]} .. {node_names[-1]}"
                raise ScenarioError(f"scenario.services[{s}].allowed_nodes: unknown node {node!r} (known: {known})")
            slot_service.append(s)
            slot_node.append(index[node])
    net = _network(sc, xy)
    S, C, K = len(services), len(nodes), len(slot_service)
    ss, sn = np.array(slot_service), np.array(slot_node)
    A = int(np.bincount(ss, minlength=S).max())
    order = np.full((S, C, A), K, dtype=np.int64)
    order_net = np.zeros((S, C, A))
    for s in range(S):
        ks = np.flatnonzero(ss == s)
        for c in range(C):
            ranked = ks[np.argsort(net[c, sn[ks]], kind="stable")]
            order[s, c, : len(ranked)] = ranked
            order_net[s, c, : len(ranked)] = net[c, sn[ranked]]
    margin = 0.5
    area = (xy.min(0) - margin, xy.max(0) + margin)
    if sc.city is not None:
        area = (np.zeros(2), np.full(2, sc.city.area_km))
    pop = np.array([s.popularity for s in services])
    world = World(
        scenario=sc,
        node_names=node_names,
        node_xy=xy,
        node_cpu=np.array([n.cpu for n in nodes]),
        node_ram=np.array([n.ram_mib for n in nodes]),
        service_names=[s.name for s in services],
        svc_cpu=np.array([s.cpu for s in services]),
        svc_ram=np.array([s.ram_mib for s in services]),
        svc_rate=np.array([s.rate for s in services]),
        svc_max=np.array([s.max_replicas for s in services]),
        mix=pop / pop.sum(),
        slot_service=ss,
        slot_node=sn,
        net_ms=net,
        order=order,
        order_net=order_net,
        demand=DemandModel(sc.demand, xy, sc.seed, sc.base_dir, area),
    )
    check_feasible(world)
    return world


def peak_users(world: World) -> float:
    """Upper bound of simultaneously active users in the default trace's day."""
    spec = world.scenario.demand
    if spec.kind == "profile":
        return float(max(world.demand.trace(k).sum(1).max() for k in spec.profiles))
    # a user is active with probability factor * (1 + noise), clipped to 1
    return spec.base_users * min(1.0, max(spec.hourly_factors) * (1.0 + spec.noise))


def check_feasible(world: World) -> None:
    """Reject scenarios whose peak demand no placement could serve."""
    sc = world.scenario
    rate = peak_users(world) * sc.demand.request_rate * world.mix  # (S,) requests/s at peak
    per_node = np.minimum(
        np.floor(world.node_cpu[world.slot_node] / world.slot_cpu),
        np.floor(world.node_ram[world.slot_node] / world.slot_ram),
    )
    fit = np.minimum(per_node, world.slot_max)
    cap = np.bincount(world.slot_service, weights=fit, minlength=world.n_services) * world.svc_rate
    cap *= sc.latency.rho_max
    bad = np.flatnonzero(rate > cap)
    if bad.size:
        s = int(bad[0])
        raise ScenarioError(
            f"scenario.demand: impossible demand for service {world.service_names[s]!r}: peak "
            f"{rate[s]:.1f} req/s exceeds its largest possible capacity {cap[s]:.1f} req/s"
        )
    need_cpu = float((rate / (world.svc_rate * sc.latency.rho_max) * world.svc_cpu).sum())
    if need_cpu > world.node_cpu.sum():
        raise ScenarioError(
            f"scenario.demand: impossible demand: peak load needs {need_cpu:.1f} CPU cores, "
            f"the cluster has {world.node_cpu.sum():.1f}"
        )

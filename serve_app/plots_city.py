"""Pictures of a simulated city: stations, cells shaded by users, the placement, and demand over the day.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot, no global backend state); ``savefig``
renders them with Agg.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from envs.world import World

TOP_SERVICES = 6  # services shown by name in the placement bars; the rest are summed as "other"
MAX_TICKS = 25  # node names on the bar axis; with more nodes every n-th is labelled
TOP_CELLS = 8  # cells shown by name in the demand plot; the rest are summed as "other"
OTHER = "0.75"
PLOT_BIN_S = 300  # demand curves are drawn as means over bins of at least this many seconds


def replicas_by_node(world: World, placement: np.ndarray) -> np.ndarray:
    """Replicas per (node, service), shape ``(N, S)``."""
    flat = world.slot_node * world.n_services + world.slot_service
    counts = np.bincount(flat, weights=placement, minlength=world.n_nodes * world.n_services)
    return counts.reshape(world.n_nodes, world.n_services).astype(np.int64)


def _cells(ax: Axes, world: World, users: np.ndarray) -> None:
    raster = world.demand.nearest.raster  # (R, R), indexed [x, y]
    lo, hi = world.demand.lo, world.demand.hi
    extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
    shade = ax.imshow(
        users[raster].T, origin="lower", extent=extent, cmap="YlOrRd", vmin=0, vmax=max(float(users.max()), 1.0)
    )
    edge = np.zeros(raster.shape, dtype=bool)
    edge[:-1] |= raster[:-1] != raster[1:]
    edge[:, :-1] |= raster[:, :-1] != raster[:, 1:]
    overlay = np.zeros((*edge.T.shape, 4))
    overlay[edge.T] = (0.25, 0.25, 0.25, 0.9)
    ax.imshow(overlay, origin="lower", extent=extent, interpolation="nearest")
    ax.figure.colorbar(shade, ax=ax, fraction=0.046, pad=0.02, label="active users in the cell")


def _stations(ax: Axes, world: World, total: np.ndarray) -> None:
    cpu = world.node_cpu
    size = 40.0 + 260.0 * cpu / cpu.max()
    xs, ys = world.node_xy.T
    ax.scatter(xs, ys, s=size, c="white", edgecolors="black", linewidths=1.2, zorder=3)
    font = 9 if world.n_nodes <= 30 else 6
    for (x, y), name, reps in zip(world.node_xy, world.node_names, total, strict=True):
        ax.annotate(
            f"{name} ({reps})", (x, y), xytext=(5, 5), textcoords="offset points", fontsize=font, zorder=4,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7}, annotation_clip=False,
        )  # fmt: skip
    for c in np.unique(cpu):
        ax.scatter([], [], s=40.0 + 260.0 * c / cpu.max(), c="white", edgecolors="black", label=f"{c:g} CPU cores")
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=len(np.unique(cpu)) + 1, fontsize=8,
        title="station marker: node sized by CPU, label = name (replicas)", title_fontsize=8, frameon=False,
    )  # fmt: skip


def _placement_bars(ax: Axes, world: World, per: np.ndarray) -> None:
    totals = per.sum(0)
    shown = [int(s) for s in np.argsort(-totals, kind="stable")[:TOP_SERVICES] if totals[s] > 0]
    x = np.arange(world.n_nodes)
    bottom = np.zeros(world.n_nodes)
    for s in shown:
        ax.bar(x, per[:, s], bottom=bottom, label=world.service_names[s], width=0.8)
        bottom += per[:, s]
    rest = per.sum(1) - bottom
    if rest.any():
        ax.bar(x, rest, bottom=bottom, color=OTHER, width=0.8, label=f"{world.n_services - len(shown)} other services")
    step = max(1, -(-world.n_nodes // MAX_TICKS))
    ax.set_xticks(x[::step], world.node_names[::step], rotation=90, fontsize=9 if step == 1 else 7)
    used = (per * world.svc_cpu[None, :]).sum(1) / world.node_cpu
    twin = ax.twinx()
    twin.plot(x, 100 * used, "k_", markersize=10 if world.n_nodes <= 30 else 4, mew=2, label="CPU in use")
    twin.set_ylim(0, 160)
    twin.set_ylabel("CPU in use (% of the node), black marks")
    twin.legend(fontsize=8, loc="upper left")
    ax.set_ylim(0, max(float(per.sum(1).max()), 1.0) * 1.6)  # headroom for the legends
    ax.set_ylabel("replicas on the node")
    ax.set_title("placement: replicas per node, by service", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)


def draw_city(world: World, users: np.ndarray, placement: np.ndarray, title: str) -> Figure:
    """Map of the cells shaded by ``users`` (per cell), stations sized by CPU, and the placement per node."""
    per = replicas_by_node(world, placement)
    fig = Figure(figsize=(15, 6.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    _cells(left, world, np.asarray(users, dtype=np.float64))
    _stations(left, world, per.sum(1))
    left.set_xlabel("x (km)")
    left.set_ylabel("y (km)")
    left.set_aspect("equal")
    left.set_title("cells (nearest station) shaded by active users", fontsize=10)
    _placement_bars(right, world, per)
    fig.suptitle(title)
    return fig


def _binned(world: World, trace: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Hours and users per cell, averaged into bins of at least ``PLOT_BIN_S`` seconds (raw 10-s slots are noise)."""
    slot_s = world.scenario.demand.slot_seconds
    per = max(1, PLOT_BIN_S // slot_s)
    while len(trace) % per:
        per -= 1
    binned = trace.reshape(len(trace) // per, per, -1).mean(1)
    note = f"{per * slot_s // 60}-min means of {slot_s}-s slots" if per > 1 else f"{slot_s}-s slots"
    return np.arange(len(binned)) * per * slot_s / 3600.0, binned, note


def _demand_panel(ax: Axes, world: World, raw: np.ndarray, label: str, named: np.ndarray) -> None:
    hours, trace, note = _binned(world, raw)
    layers = [trace[:, c] for c in named]
    labels = [world.node_names[c] for c in named]
    colors = [f"C{i % 10}" for i in range(len(named))]
    if len(named) < world.n_nodes:
        layers.append(trace.sum(1) - np.sum(layers, axis=0))
        labels.append(f"{world.n_nodes - len(named)} other cells")
        colors.append(OTHER)
    ax.stackplot(hours, layers, labels=labels, colors=colors, alpha=0.85, linewidth=0)
    total = trace.sum(1)
    ax.plot(hours, total, color="black", linewidth=0.8, label="total")
    factor = world.demand.hour_factor()[:: len(raw) // len(trace)]
    scale = total.mean() / max(factor.mean(), 1e-12)
    ax.plot(hours, factor * scale, "--", color="tab:blue", linewidth=1.5, label=f"diurnal factor × {scale:.0f}")
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel("hour of day")
    peak = raw.sum(1).max()
    ax.set_title(f"{label}: mean {total.mean():.1f}, peak {peak:.0f} active users ({note})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def draw_demand(world: World, traces: dict[str, np.ndarray]) -> Figure:
    """Users per cell over the day, one panel per trace (e.g. recorded profiles A and B side by side)."""
    fig = Figure(figsize=(7.5 * len(traces), 5.2), layout="constrained")
    axes = fig.subplots(1, len(traces), sharey=True, squeeze=False)[0]
    mean = sum(np.asarray(t, dtype=np.float64).mean(0) for t in traces.values())
    named = np.arange(world.n_nodes)  # same cells, same colours in every panel
    if world.n_nodes > TOP_CELLS + 1:
        named = np.sort(np.argsort(-mean, kind="stable")[:TOP_CELLS])
    for ax, (label, trace) in zip(axes, traces.items(), strict=True):
        _demand_panel(ax, world, np.asarray(trace, dtype=np.float64), label, named)
    axes[0].set_ylabel("active users (stacked by cell)")
    fig.suptitle(f"{world.scenario.name}: demand over the day")
    return fig

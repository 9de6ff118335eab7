"""Reports of an :class:`~policies.evaluate.EvalResult`: Markdown and terminal tables (mean ± 95 % CI) and PNG plots."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from policies.evaluate import METRICS, EvalResult, Interval

DEFAULT_COLUMNS = ("reward", "latency_mean", "latency_p95", "sla_violation_pct", "replicas", "changes", "decision_ms")

#: columns tried, in order, when a learning curve comes from a Tune/RLlib ``progress.csv``
X_KEYS = ("num_env_steps_sampled_lifetime", "env_runners/num_env_steps_sampled_lifetime", "timesteps_total")
Y_KEYS = ("env_runners/episode_return_mean", "episode_return_mean", "episode_reward_mean")


def fmt(iv: Interval) -> str:
    """``mean ± half-width`` with a precision that suits the magnitude."""
    scale = max(abs(iv.mean), 0.0 if math.isnan(iv.half_width) else iv.half_width)
    digits = 0 if scale >= 1000 else 1 if scale >= 100 else 2 if scale >= 1 else 3
    hw = "n/a" if math.isnan(iv.half_width) else f"{iv.half_width:.{digits}f}"
    return f"{iv.mean:.{digits}f} ± {hw}"


def table_rows(result: EvalResult, columns: Sequence[str] = DEFAULT_COLUMNS) -> tuple[list[str], list[list[str]]]:
    unknown = [c for c in columns if c not in METRICS]
    if unknown:
        raise ValueError(f"columns: unknown metric(s) {unknown} (known: {', '.join(METRICS)})")
    summary = result.summary()
    header = ["policy", *(METRICS[c][0] for c in columns)]
    return header, [[p, *(fmt(ms[c]) for c in columns)] for p, ms in summary.items()]


def _caption(result: EvalResult) -> str:
    hours = result.steps * result.slot_seconds / 3600
    return (
        f"{result.env}: {len(result.seeds)} seeds, {result.steps} steps ({hours:g} h) per rollout, "
        f"mean ± {100 * result.level:g} % CI (t over seeds)"
    )


def markdown_table(result: EvalResult, columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    header, rows = table_rows(result, columns)
    lines = [f"| {' | '.join(header)} |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    return _caption(result) + "\n\n" + "\n".join(lines) + "\n"


def terminal_table(result: EvalResult, columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    header, rows = table_rows(result, columns)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([_caption(result), rule, line(header), rule, *(line(r) for r in rows), rule]) + "\n"


def plot_latency_over_day(result: EvalResult, path: str | Path, smooth: int | None = None) -> Path:
    """Mean latency per slot of the day (averaged over seeds), one line per policy, as a PNG."""
    path = Path(path)
    day = 86400 // result.slot_seconds
    smooth = smooth or max(1, result.steps // 150)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in result.policies:
        runs = result.of(name)
        slots = np.concatenate([r.slots for r in runs])
        lat = np.concatenate([r.latency_ms for r in runs])
        count = np.bincount(slots, minlength=day)
        mean = np.bincount(slots, lat, minlength=day) / np.maximum(count, 1)
        seen = np.flatnonzero(count)
        y = mean[seen]
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="same")
        ax.plot(seen * result.slot_seconds / 3600, y, label=name, lw=1.2)
    ax.set_xlabel("hour of day")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{result.env}: latency over the day (mean over {len(result.seeds)} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


Curve = str | Path | Mapping[str, Sequence[float]] | tuple[Sequence[float], Sequence[float]]


def read_curve(source: Curve, x: str | None = None, y: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one learning curve from a ``progress.csv`` path, a column mapping or an ``(x, y)`` pair."""
    if isinstance(source, tuple):
        xs, ys = source
        return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if isinstance(source, str | Path):
        try:
            with open(source, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as err:
            raise ValueError(f"learning curve {source}: {err.strerror}") from None
        cols: Mapping[str, Sequence] = {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
    else:
        cols = source
    xk = x or next((k for k in (*X_KEYS, "training_iteration") if k in cols), None)
    yk = y or next((k for k in Y_KEYS if k in cols), None)
    if xk is None or yk is None or xk not in cols or yk not in cols:
        raise ValueError(f"learning curve: need x column {x or X_KEYS} and y column {y or Y_KEYS}, got {sorted(cols)}")
    xv = np.array([float(v) if v not in ("", None) else np.nan for v in cols[xk]])
    yv = np.array([float(v) if v not in ("", None) else np.nan for v in cols[yk]])
    keep = ~(np.isnan(xv) | np.isnan(yv))
    return xv[keep], yv[keep]


def plot_learning_curves(
    curves: Mapping[str, Curve], path: str | Path, x: str | None = None, y: str | None = None, title: str = ""
) -> Path:
    """One line per run: episode return mean against env steps (or iterations), as a PNG.

    Each value of ``curves`` is a Tune/RLlib ``progress.csv`` path, a mapping of column -> values, or an
    ``(x, y)`` pair; ``x``/``y`` name the columns (default: the first of :data:`X_KEYS` / :data:`Y_KEYS`).
    """
    if not curves:
        raise ValueError("curves: need at least one learning curve")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, source in curves.items():
        xs, ys = read_curve(source, x, y)
        ax.plot(xs, ys, label=label, lw=1.4)
    ax.set_xlabel(x or "env steps")
    ax.set_ylabel(y or "episode return mean")
    ax.set_title(title or "learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path

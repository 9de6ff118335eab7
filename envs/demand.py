"""Demand: users per cell per slot over a day, from a diurnal curve with mobility or from recorded profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs import kernels
from envs.city import NearestStation, move_towards, waypoint_targets
from envs.scenario import DemandSpec, ScenarioError

DAY_S = 86400
WORK_HOURS = range(8, 18)


def load_profile(path: Path, n_cells: int, slots_per_day: int, field: str = "scenario.demand.profiles") -> np.ndarray:
    """Read a per-slot users CSV (header ``slot,<cell>...``) into a ``(slots, cells)`` float32 array."""
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as err:
        raise ScenarioError(f"{field}: cannot read {path}: {err}") from None
    if data.shape != (slots_per_day, n_cells + 1):
        raise ScenarioError(
            f"{field}: {path.name} has shape {data.shape}, expected ({slots_per_day}, {n_cells + 1}) "
            "(one row per slot of the day: slot, then users per cell)"
        )
    if not np.isfinite(data).all() or (data[:, 1:] < 0).any():
        raise ScenarioError(f"{field}: {path.name} has negative or non-finite user counts")
    return data[:, 1:].astype(np.float32)


class DemandModel:
    """Generates day-long traces of active users per cell; traces are cached by key.

    A trace key is an ``int`` seed (synthetic demand: a fresh mobility and noise realisation per seed)
    or a profile name (recorded demand). Slot ``t`` covers ``[t, t+1) * slot_seconds`` of the day.
    """

    def __init__(
        self,
        spec: DemandSpec,
        stations: np.ndarray,
        scenario_seed: int,
        base_dir: str | None,
        area: tuple[np.ndarray, np.ndarray],
    ):
        self.spec = spec
        self.n_cells = len(stations)
        self.slots_per_day = DAY_S // spec.slot_seconds
        self.scenario_seed = scenario_seed
        self._cache: dict[int | str, np.ndarray] = {}
        self.lo, self.hi = area
        self.nearest = NearestStation(stations, self.lo, self.hi)
        rng = np.random.default_rng([scenario_seed, 7])
        self.hotspots = rng.uniform(self.lo, self.hi, size=(max(2, spec.mobility.hotspots), 2))
        if spec.kind == "profile":
            root = Path(base_dir or ".")
            for name, rel in spec.profiles.items():
                field = f"scenario.demand.profiles.{name}"
                self._cache[name] = load_profile(root / rel, self.n_cells, self.slots_per_day, field)

    @property
    def default_key(self) -> int | str:
        return self.spec.default_profile if self.spec.kind == "profile" else 0  # type: ignore[return-value]

    def trace(self, key: int | str) -> np.ndarray:
        """Users per cell per slot, shape ``(slots_per_day, n_cells)``."""
        if key not in self._cache:
            self.check_key(key)
            self._cache[key] = self._synthetic(int(key))
        return self._cache[key]

    def check_key(self, key: object) -> None:
        """Raise :class:`ScenarioError` unless ``key`` names a trace of this demand model."""
        if key in self._cache:
            return
        if self.spec.kind == "profile":
            known = ", ".join(sorted(str(k) for k in self._cache))
            raise ScenarioError(f"demand.profiles: unknown profile {key!r} (known: {known})")
        if not isinstance(key, int | np.integer) or isinstance(key, bool) or key < 0:
            raise ScenarioError(f"demand: a synthetic trace key must be an int seed >= 0, got {key!r}")

    def hour_factor(self) -> np.ndarray:
        """Diurnal factor per slot (piecewise constant per hour, like the upstream generator)."""
        hours = (np.arange(self.slots_per_day) * self.spec.slot_seconds) // 3600
        return np.asarray(self.spec.hourly_factors, dtype=np.float64)[hours]

    def _synthetic(self, seed: int, compiled: bool | None = None) -> np.ndarray:
        """One synthetic day; ``compiled`` (default: numba available) picks the kernel or the numpy loop."""
        spec, mob = self.spec, self.spec.mobility
        rng = np.random.default_rng([self.scenario_seed, seed, 11])
        n_hot = len(self.hotspots)
        work = self.hotspots[rng.integers(0, max(1, n_hot // 2), spec.base_users)]
        home = self.hotspots[rng.integers(n_hot // 2, n_hot, spec.base_users)]
        pos = waypoint_targets(rng, home, mob.hotspot_sigma_km, self.lo, self.hi)
        target = pos.copy()
        speed = rng.uniform(*mob.speed_kmh, size=spec.base_users) * spec.slot_seconds / 3600.0
        factor = self.hour_factor()
        noise = rng.uniform(-spec.noise, spec.noise, size=(self.slots_per_day, self.n_cells))
        out = np.empty((self.slots_per_day, self.n_cells), dtype=np.float32)
        if kernels.ENABLED if compiled is None else compiled:
            return self._synthetic_compiled(rng, work, home, pos, speed, factor, noise, out)
        for t in range(self.slots_per_day):
            pos, arrived = move_towards(pos, target, speed)
            if arrived.any():
                hour = (t * spec.slot_seconds) // 3600
                p_work = mob.work_share_by_day if hour in WORK_HOURS else 1.0 - mob.work_share_by_day
                anchor = np.where((rng.random(int(arrived.sum())) < p_work)[:, None], work[arrived], home[arrived])
                target[arrived] = waypoint_targets(rng, anchor, mob.hotspot_sigma_km, self.lo, self.hi)
            present = np.bincount(self.nearest(pos), minlength=self.n_cells)
            p_active = np.clip(factor[t] * (1.0 + noise[t]), 0.0, 1.0)
            out[t] = rng.binomial(present, p_active)
        return out

    def _synthetic_compiled(
        self, rng: np.random.Generator, work: np.ndarray, home: np.ndarray, pos: np.ndarray, speed: np.ndarray,
        factor: np.ndarray, noise: np.ndarray, out: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """The loop of :meth:`_synthetic` with the per-user work compiled: the same draws in the same order."""
        spec, mob = self.spec, self.spec.mobility
        target = pos.copy()
        arrived, present = np.empty(len(pos), dtype=np.int64), np.empty(self.n_cells, dtype=np.int64)
        near = self.nearest
        for t in range(self.slots_per_day):
            n = kernels.move_and_count(pos, target, speed, near.lo, near.scale, near.raster, arrived, present)
            if n:
                hour = (t * spec.slot_seconds) // 3600
                p_work = mob.work_share_by_day if hour in WORK_HOURS else 1.0 - mob.work_share_by_day
                draw = rng.random(n)
                shift = rng.normal(0.0, mob.hotspot_sigma_km, size=(n, 2))
                kernels.retarget(arrived[:n], draw, shift, p_work, work, home, self.lo, self.hi, target)
            p_active = np.clip(factor[t] * (1.0 + noise[t]), 0.0, 1.0)
            out[t] = rng.binomial(present, p_active)
        return out

"""City geometry: hard-core placement of base stations, nearest-station lookup, random-waypoint mobility."""

from __future__ import annotations

import numpy as np

RASTER = 256  # nearest-station lookup grid per side


def hard_core_points(rng: np.random.Generator, n: int, area_km: float, min_dist: float) -> np.ndarray:
    """``n`` points uniform in ``[0, area]^2`` with pairwise distance >= ``min_dist``.

    Simple sequential inhibition (a hard-core point process): candidates are drawn uniformly and kept
    only if they respect the minimum distance to every kept point.
    """
    pts = np.empty((n, 2))
    kept = 0
    for _ in range(2000 * n):
        cand = rng.uniform(0.0, area_km, size=2)
        if kept == 0 or np.min(np.hypot(*(pts[:kept] - cand).T)) >= min_dist:
            pts[kept] = cand
            kept += 1
            if kept == n:
                return pts
    raise ValueError(f"city.min_distance_km: cannot place {n} stations {min_dist} km apart in a {area_km} km square")


class NearestStation:
    """Maps positions to the index of the nearest station through a precomputed raster."""

    def __init__(self, stations: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        self.lo, self.hi = lo, hi
        self.scale = (RASTER - 1) / np.maximum(hi - lo, 1e-9)
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], RASTER), np.linspace(lo[1], hi[1], RASTER), indexing="ij")
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        d2 = ((grid[:, None, :] - stations[None, :, :]) ** 2).sum(-1)
        self.raster = d2.argmin(1).astype(np.int32).reshape(RASTER, RASTER)

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        ij = np.rint((xy - self.lo) * self.scale).astype(np.int64)
        np.clip(ij, 0, RASTER - 1, out=ij)
        return self.raster[ij[:, 0], ij[:, 1]]


def waypoint_targets(
    rng: np.random.Generator, anchors: np.ndarray, sigma: float, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """A new waypoint for each row of ``anchors``: Gaussian around it, clipped to the area."""
    pts = anchors + rng.normal(0.0, sigma, size=anchors.shape)
    return np.clip(pts, lo, hi)


def move_towards(pos: np.ndarray, target: np.ndarray, step_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move each position up to ``step_km`` towards its target; returns new positions and an arrived mask."""
    delta = target - pos
    dist = np.hypot(delta[:, 0], delta[:, 1])
    arrived = dist <= step_km
    frac = np.where(arrived, 1.0, step_km / np.maximum(dist, 1e-12))
    return pos + delta * frac[:, None], arrived

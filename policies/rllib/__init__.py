"""RLlib algorithms for the placement envs: masked RLModules, config builders, checkpoint loading and export.

Importing this package imports no Ray: ``policies.rllib.export.load_export`` and :mod:`policies.rllib.layout` work
without it. ``ALGORITHMS``, ``algorithm_config`` and ``register_envs`` are loaded (with Ray) on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALGORITHMS", "algorithm_config", "register_envs"]


def __getattr__(name: str) -> Any:
    if name in ("ALGORITHMS", "algorithm_config"):
        from policies.rllib import configs

        return getattr(configs, name)
    if name == "register_envs":
        from policies.rllib.registration import register_envs

        return register_envs
    raise AttributeError(f"module 'policies.rllib' has no attribute {name!r}")

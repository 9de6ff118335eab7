"""RLlib algorithms for the placement envs: masked RLModules, config builders, checkpoint loading and export."""

from policies.rllib.configs import ALGORITHMS, algorithm_config
from policies.rllib.registration import register_envs

__all__ = ["ALGORITHMS", "algorithm_config", "register_envs"]

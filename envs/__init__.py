"""Gymnasium environments of lwmecps-gym. Importing this package registers every id (and does nothing else)."""

from gymnasium.envs.registration import register

from envs.presets import get_scenario

#: registered id -> scenario preset
ENV_IDS = {
    "lwmecps/TestApp4BS-v0": "testapp-4bs",
    "lwmecps/ReferenceCity-v0": "reference-city",
    "lwmecps/LargeCity-v0": "large-city",
}

for _id, _preset in ENV_IDS.items():
    register(
        id=_id,
        entry_point="envs.placement_env:PlacementEnv",
        vector_entry_point="envs.vector:PlacementVectorEnv",
        max_episode_steps=get_scenario(_preset).episode_slots,
        kwargs={"scenario": _preset},
    )

__all__ = ["ENV_IDS"]

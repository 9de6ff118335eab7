"""Ray Tune experiment presets per environment and algorithm, by name.

``PRESETS`` maps a preset name (what the CLI and the REST API use) to the module that defines it; modules are
imported on demand, so listing names needs neither Ray nor torch. ``get_preset(name)`` returns the
:class:`~tune_configs.preset.Preset`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tune_configs.preset import Preset

#: preset name -> defining module (``python -m <module>`` runs it)
PRESETS: dict[str, str] = {
    "testapp-ppo": "tune_configs.testapp_ppo",
    "testapp-ppo-search": "tune_configs.testapp_ppo_search",
    "testapp-appo": "tune_configs.testapp_appo",
    "testapp-dqn": "tune_configs.testapp_dqn",
    "testapp-sac": "tune_configs.testapp_sac",
    "refcity-ppo": "tune_configs.refcity_ppo",
    "refcity-appo": "tune_configs.refcity_appo",
    "largecity-ppo": "tune_configs.largecity_ppo",
}


class PresetError(ValueError):
    """Bad input to a Tune run (unknown preset, bad override, bad stop criterion): one readable line."""


def get_preset(name: str) -> Preset:
    try:
        module = PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
    return importlib.import_module(module).PRESET


__all__ = ["PRESETS", "PresetError", "get_preset"]

"""Fixtures of the KubeRay tests. The helpers live in ``manifest_checks.py`` next to this file; with
``--import-mode=importlib`` it is not importable by name, so it is loaded here and handed out as ``checks``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).parent


def _load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def checks() -> ModuleType:
    return _load("_lwmecps_tests_kuberay_checks", HERE / "manifest_checks.py")


@pytest.fixture(scope="session")
def render(checks: ModuleType) -> ModuleType:
    """``kuberay/render.py`` (a script, not a package module)."""
    return _load("_lwmecps_kuberay_render", checks.KUBERAY / "render.py")


@pytest.fixture(scope="session")
def plain_objects(checks: ModuleType) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of every manifest in kuberay/ (plain files, including rbac.yaml)."""
    return [(path.name, obj) for path in checks.plain_files() for obj in checks.documents(path.read_text())]


@pytest.fixture(scope="session")
def rendered_sets(checks: ModuleType, render: ModuleType) -> dict[str, list[dict[str, Any]]]:
    """Value-set name -> the objects the chart renders with it."""
    out = {}
    for name, values in checks.VALUE_SETS.items():
        manifests = render.render_chart(values, namespace="lwmecps")
        out[name] = [obj for t, text in manifests.items() if t.endswith(".yaml") for obj in checks.documents(text)]
    return out


@pytest.fixture(scope="session")
def all_objects(
    plain_objects: list[tuple[str, dict[str, Any]]], rendered_sets: dict[str, list[dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    """Every object to check: (where it comes from, object)."""
    rendered = [
        (f"chart[{name}] {o['kind']}/{o['metadata']['name']}", o) for name, objs in rendered_sets.items() for o in objs
    ]
    return [(f"kuberay/{name}", obj) for name, obj in plain_objects] + rendered

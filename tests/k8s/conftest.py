"""Fixtures of the cluster-backend tests: the fake API server and fake test-app client, both on 127.0.0.1.

The helper modules live next to this file; with ``--import-mode=importlib`` they are not importable by name,
so they are loaded here and handed to the tests as fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("kubernetes")

HERE = Path(__file__).parent


def _load(name: str) -> ModuleType:
    key = f"_lwmecps_tests_k8s_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture(scope="session")
def fake_api() -> ModuleType:
    return _load("fake_apiserver")


@pytest.fixture(scope="session")
def fake_app() -> ModuleType:
    return _load("fake_testapp")


@pytest.fixture
def cluster_factory(fake_api: ModuleType, tmp_path: Path) -> Iterator[Callable[..., tuple[Any, str]]]:
    """``make(nodes, **kw) -> (FakeCluster, kubeconfig path)``; servers stop at teardown."""
    servers = []

    def make(nodes: dict[str, tuple[str, str]], **kw: Any) -> tuple[Any, str]:
        cluster = fake_api.FakeCluster(nodes=nodes, **kw)
        server = fake_api.FakeApiServer(cluster)
        servers.append(server)
        return cluster, server.kubeconfig(str(tmp_path / f"kubeconfig-{len(servers)}"))

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def testapp(fake_app: ModuleType) -> Iterator[Any]:
    server = fake_app.FakeTestAppServer(fake_app.FakeTestApp())
    yield server
    server.close()

"""Project layout guard: the four import packages, the dependency direction between them, tests not importable."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"envs", "policies", "serve_app", "tune_configs"}
#: package -> our packages it may import (besides itself)
ALLOWED = {"envs": set(), "policies": {"envs"}, "tune_configs": {"policies", "envs"}, "serve_app": OURS}
#: third-party packages a package must never import
FORBIDDEN = {"envs": {"ray", "fastapi", "pymongo", "kubernetes"}}
#: the one module allowed a forbidden import (lazily, inside a function; `import envs` still never loads it)
EXEMPT = {("envs/backends/kubernetes.py", "kubernetes")}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (function-level and ``TYPE_CHECKING`` ones too)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def package_imports(package: str) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return {str(f.relative_to(ROOT)): imported_roots(f) for f in files}


@pytest.mark.parametrize("package", sorted(OURS))
def test_package_imports(package):
    module = importlib.import_module(package)
    assert Path(module.__file__ or "").resolve().parent == ROOT / package


@pytest.mark.parametrize("package", sorted(OURS))
def test_dependency_direction(package):
    may_use = ALLOWED[package] | {package}
    bad = {
        f"{file} imports {name}"
        for file, roots in package_imports(package).items()
        for name in roots
        if (name in OURS and name not in may_use)
        or (name in FORBIDDEN.get(package, set()) and (file, name) not in EXEMPT)
    }
    assert not bad, sorted(bad)


def test_the_import_walker_sees_imports():
    envs_imports = set().union(*package_imports("envs").values())
    assert {"numpy", "gymnasium", "envs"} <= envs_imports  # so an empty result above is not vacuous


def test_relative_imports_are_not_used_to_hide_a_dependency():
    relative = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in sorted(OURS)
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 1
    ]
    assert not relative  # ``from ..x`` could reach a sibling package unseen by the check above


def test_importing_envs_loads_no_service_stack(tmp_path):
    code = (
        "import sys, envs, envs.placement_env; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'fastapi', 'pymongo', 'kubernetes', "
        "'policies', 'serve_app', 'tune_configs'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tests_are_not_importable(tmp_path):
    assert not (ROOT / "tests" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import tests"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0
    assert "No module named 'tests'" in out.stderr

"""The manifests in kuberay/ and every object the chart renders: accepted by an API server with the KubeRay CRDs,
consistent with the code (Ray version, settings, presets, Serve application) and with the Dockerfile's pins."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "kuberay"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(package: str) -> str:
    """The ``==`` pin of ``package`` in pyproject.toml's dependencies."""
    for dep in PYPROJECT["project"]["dependencies"]:
        match = re.fullmatch(rf"{package}(\[[^\]]*\])?==([0-9.]+)", dep)
        if match:
            return match.group(2)
    raise AssertionError(f"{package} is not pinned with == in pyproject.toml")


def test_plain_manifests_are_the_chart_rendered(render, checks):
    expected = render.plain_manifests()
    actual = {p.name: p.read_text() for p in checks.plain_files() if p.name != "rbac.yaml"}
    stale = sorted(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name))
    assert not stale, f"run `python kuberay/render.py`: {stale} differ from the chart"


def test_every_object_is_accepted_by_the_api_server(all_objects, checks):
    assert len(all_objects) > 20
    errors = [f"{where}: {e}" for where, obj in all_objects for e in checks.validation_errors(obj)]
    assert not errors, "\n".join(errors[:20])


def _rename(obj: dict[str, Any], path: str, new: str) -> None:
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[new] = node.pop(last)


@pytest.mark.parametrize(
    ("path", "new", "expected"),
    [
        ("spec.rayClusterConfig.workerGroupSpecs", "workerGroupSpec", "spec.rayClusterConfig.workerGroupSpec: unknown"),
        ("spec.rayClusterConfig.headGroupSpec", "headGroup", "'headGroupSpec' is a required property"),
        (
            "spec.rayClusterConfig.headGroupSpec.template.spec.containers.0.imagePullPolicy",
            "imagePullPolcy",
            "head pod template",
        ),
    ],
)
def test_the_validator_refuses_what_an_api_server_refuses(path, new, expected, checks):
    (service,) = yaml.safe_load_all((KUBERAY / "ray-service.yaml").read_text())
    assert checks.validation_errors(service) == []
    broken = copy.deepcopy(service)
    _rename(broken, path, new)
    errors = checks.validation_errors(broken)
    assert any(expected in e for e in errors), errors


def test_the_validator_checks_types_and_core_kinds(checks):
    (service,) = yaml.safe_load_all((KUBERAY / "ray-service.yaml").read_text())
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "four"
    assert any("maxReplicas: 'four' is not of type 'integer'" in e for e in checks.validation_errors(service))
    mongo = list(yaml.safe_load_all((KUBERAY / "mongodb.yaml").read_text()))
    (svc,) = [o for o in mongo if o["kind"] == "Service"]
    svc["spec"]["portz"] = svc["spec"].pop("ports")
    assert any("portz" in e for e in checks.validation_errors(svc))


def test_ray_objects_pin_the_project_ray_version_and_one_auth_mode(all_objects, checks):
    ray_version = pinned("ray")
    modes: dict[str, set[str]] = {}
    for where, obj in checks.ray_objects(all_objects):
        spec = checks.ray_cluster_spec(obj)
        assert spec["rayVersion"] == ray_version, where
        auth = spec["authOptions"]
        modes.setdefault(where.split(" ")[0] if where.startswith("chart") else "plain", set()).add(auth["mode"])
        if auth["mode"] == "token":
            assert auth["secretName"], f"{where}: token auth needs the secret holding auth_token"
    # KubeRay sets RAY_AUTH_MODE (and RAY_AUTH_TOKEN) from authOptions in every Ray container: never override it
    for where, _pod, c in checks.containers(all_objects):
        assert "RAY_AUTH_MODE" not in {e["name"] for e in c.get("env", [])}, where
    assert all(len(m) == 1 for m in modes.values()), modes
    assert modes["plain"] == {"token"}


def test_every_ray_container_has_shm_in_memory_and_resources(all_objects, checks):
    checked = checks.containers(all_objects)
    assert checked
    for where, pod, c in checked:
        volumes = {v["name"]: v for v in pod["volumes"]}
        (shm,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory", where
        res = c["resources"]
        for kind in ("cpu", "memory"):
            assert kind in res["requests"] and kind in res["limits"], f"{where}: {kind}"
        assert res["requests"]["memory"] == res["limits"]["memory"], f"{where}: memory request != limit"


def test_workers_autoscale_between_their_bounds(all_objects, checks):
    for where, obj in checks.ray_objects(all_objects):
        spec = checks.ray_cluster_spec(obj)
        assert spec["enableInTreeAutoscaling"] is True, where
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", f"{where}: training would land on the head"
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], where
        if obj["kind"] == "RayService":  # the API's training drivers train in-process: they must go to workers
            (app,) = yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"]
            assert app["args"]["job_num_cpus"] > 0, where


def test_serve_config_validates_and_its_builder_builds_the_app(all_objects, tmp_path, monkeypatch):
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    monkeypatch.setenv("LWMECPS_DATA_DIR", str(tmp_path))  # build_app reads Settings: keep generated keys here
    services = [(w, o) for w, o in all_objects if o["kind"] == "RayService"]
    assert services
    for where, obj in services:
        config = ServeDeploySchema.model_validate(yaml.safe_load(obj["spec"]["serveConfigV2"]))
        assert config.http_options.host == "0.0.0.0", where  # reachable through the serve service
        for app in config.applications:
            module, _, attr = app.import_path.partition(":")
            assert importlib.util.find_spec(module) is not None, f"{where}: {module} does not exist"
            builder = getattr(importlib.import_module(module), attr)
            assert isinstance(builder(app.args), Application), where


def test_ray_job_entrypoints_run_existing_presets_with_valid_options(all_objects):
    from tune_configs import PRESETS
    from tune_configs.cli import build_parser

    jobs = [(w, o) for w, o in all_objects if o["kind"] == "RayJob"]
    assert jobs
    for where, obj in jobs:
        argv = shlex.split(obj["spec"]["entrypoint"])
        assert argv[:2] == ["python", "-m"], where
        module = argv[2]
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        assert module == PRESETS[obj["metadata"]["labels"]["lwmecps/preset"]], where
        preset = next(name for name, mod in PRESETS.items() if mod == module)
        args = build_parser(preset).parse_args(argv[3:])  # exits (status 2) on an unknown or malformed option
        assert args.storage.startswith("/") or "://" in args.storage, f"{where}: storage must outlive the job"


def test_every_preset_has_a_ray_job_manifest():
    from tune_configs import PRESETS

    files = {p.name.removeprefix("ray-job.").removesuffix(".yaml") for p in KUBERAY.glob("ray-job.*.yaml")}
    assert files == set(PRESETS)


def test_environment_is_made_of_settings_fields_and_documented_secret_keys(all_objects, checks):
    from serve_app.settings import Settings

    documented = _documented_secret_keys()
    assert documented >= checks.SECRET_KEYS | {"auth_token"}
    for where, _pod, c in checks.containers(all_objects):
        for env in c["env"]:
            if env["name"].startswith("LWMECPS_"):
                field = env["name"].removeprefix("LWMECPS_").lower()
                assert field in Settings.model_fields, f"{where}: {env['name']} is no setting"
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == "lwmecps-secrets":
                known = checks.SECRET_KEYS | checks.SECRET_KEYS_OPTIONAL
                assert ref["key"] in known, f"{where}: undocumented key {ref['key']}"
                assert ref.get("optional", False) == (ref["key"] in checks.SECRET_KEYS_OPTIONAL), where


def _documented_secret_keys() -> set[str]:
    """Keys of the ``kubectl create secret generic lwmecps-secrets`` command in docs/deploy-kuberay.md."""
    text = (REPO / "docs" / "deploy-kuberay.md").read_text()
    match = re.search(r"kubectl [^\n]*create secret generic lwmecps-secrets((?:[^\n]*\\\n)*[^\n]*)", text)
    assert match, "docs/deploy-kuberay.md: no `kubectl create secret generic lwmecps-secrets` command"
    return set(re.findall(r"--from-literal=([A-Za-z_]+)=", match.group(0)))


def test_storage_is_one_shared_volume_on_every_ray_pod(plain_objects, checks):
    objects = [(f"kuberay/{n}", o) for n, o in plain_objects]
    (pvc,) = [o for _, o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for where, pod, c in checks.containers(objects):
        volumes = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes}
        (mount,) = [m for m in c["volumeMounts"] if claims.get(m["name"]) == pvc["metadata"]["name"]]
        root = next(e["value"] for e in c["env"] if e["name"] == "LWMECPS_STORAGE_ROOT")
        assert root.startswith(mount["mountPath"] + "/"), where


def test_bundled_mongodb_answers_at_the_uri_the_ray_pods_use(plain_objects, checks):
    mongo = {o["kind"]: o for name, o in plain_objects if name == "mongodb.yaml"}
    svc, sts, secret = mongo["Service"], mongo["StatefulSet"], mongo["Secret"]
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    objects = [(f"kuberay/{n}", o) for n, o in plain_objects]
    service_objects = [(w, o) for w, o in objects if o["kind"] != "RayJob"]  # jobs of presets need no database
    for where, _pod, c in checks.containers(service_objects):
        env = {e["name"]: e for e in c["env"]}
        uri = env["LWMECPS_MONGODB_URI"]["value"]
        host = re.fullmatch(r"mongodb://root:\$\(MONGODB_ROOT_PASSWORD\)@([^:/]+):27017/\?authSource=admin", uri)
        assert host and host.group(1) == svc["metadata"]["name"], where
        ref = env["MONGODB_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"], where


# -- the image ---------------------------------------------------------------------------------------------------------

DOCKERFILE = (REPO / "Dockerfile").read_text()
RUN_LINES = [line for line in DOCKERFILE.splitlines() if line.startswith("RUN ")]


def test_dockerfile_base_image_matches_the_pinned_ray_and_python():
    python = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert python and int(python.group(2)) == int(python.group(1)) + 1, "one Python minor version"
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert base == f"rayproject/ray:{pinned('ray')}-py3{python.group(1)}-cpu"


def test_dockerfile_installs_cpu_torch_before_the_package():
    torch = [i for i, line in enumerate(RUN_LINES) if f"torch=={pinned('torch')}" in line]
    package = [i for i, line in enumerate(RUN_LINES) if re.search(r"pip install [^&]* \.( |$)", line)]
    assert len(torch) == 1 and len(package) == 1 and torch[0] < package[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in RUN_LINES[torch[0]]


def test_the_image_gets_every_package_and_no_local_state():
    packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = set(re.findall(r"^COPY \S+ (\S+) ", DOCKERFILE, re.MULTILINE))
    assert set(packages) <= copied
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "runs", "wandb"} <= ignored
    assert not ignored & (set(packages) | {"pyproject.toml", "README.md"})


@pytest.mark.parametrize("path", sorted(p.name for p in Path(KUBERAY).glob("*.yaml")))
def test_every_file_parses(path):
    assert list(yaml.safe_load_all((KUBERAY / path).read_text()))

"""Offline validation of the deployment files under infra/.

No Docker engine, Kubernetes API or network is needed: every check uses schemas shipped in
installed packages (the Compose specification from check-jsonschema, Kubernetes schemas from
kubernetes-validate, Ray's own cluster-launcher schema) or the project's and its tools' own parsers.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.resources
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE_FILE = INFRA / "compose" / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = INFRA / "compose" / ".env.example"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
KUBERAY = INFRA / "kuberay"
RAY_LAUNCHER = INFRA / "ray" / "cluster.yaml"
POOL_TEMPLATE = INFRA / "prefect" / "xlm-process-pool.json"
POOL_NAME = "xlm-process"
IMAGE_PROJECT_DIR = "/opt/xlm"  # where the Dockerfile copies the checkout
KUBERNETES_VERSION = "1.32"
TOTAL_GPUS = 64  # 8 nodes x 8 GPUs

YAML_FILES = sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml")])


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _pins() -> dict[str, str]:
    """`name==version` requirements of the project's dependencies, by lower-case name."""
    pins = {}
    for requirement in _pyproject()["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", requirement.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_every_yaml_file_parses_to_mappings(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{_rel(path)} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


def test_infra_tree_has_the_deployment_files() -> None:
    for path in (COMPOSE_FILE, COMPOSE_ENV_EXAMPLE, DOCKERFILE, RAY_LAUNCHER, POOL_TEMPLATE):
        assert path.is_file(), f"missing {_rel(path)}"
    kinds = {doc["kind"] for path in KUBERAY.glob("*.yaml") for doc in _load_all(path)}
    assert {"RayCluster", "RayJob", "ConfigMap", "PersistentVolumeClaim"} <= kinds


# --- Compose ---------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (`${X}`, `${X:-default}`, `${X:?error}`, `$$`) on every string."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        current = env.get(name)
        unset = current is None or (current == "" and operator in (":-", ":?"))
        if operator in ("-", ":-"):
            return argument if unset else current
        if operator in ("?", ":?") and unset:
            raise KeyError(f"{name}: {argument}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def _env_example() -> dict[str, str]:
    env = {}
    for line in COMPOSE_ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return _interpolate(raw, _env_example() if env is None else env)


def _compose_spec_validator() -> jsonschema.protocols.Validator:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def _errors(validator: jsonschema.protocols.Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def test_compose_file_validates_against_the_compose_specification() -> None:
    validator = _compose_spec_validator()
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert _errors(validator, raw) == []
    assert _errors(validator, _compose()) == []


def test_compose_secrets_come_from_the_environment() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    secret_names = {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "RAY_AUTH_TOKEN"}
    for name in secret_names:
        uses = re.findall(r"\$\{" + name + r"(:?[-?])?", text)
        assert uses, f"{name} is not used"
        assert all(op == ":?" for op in uses), f"{name} must be required (${{{name}:?...}}), never defaulted"
    example = _env_example()
    assert all(example[name] == "change-me" for name in secret_names)
    for name in secret_names:
        with pytest.raises(KeyError, match=name):
            _compose({key: value for key, value in example.items() if key != name})
    assert ".env" in (INFRA / "compose" / ".gitignore").read_text(encoding="utf-8").split()


def _published_ports(compose: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                yield name, port.get("host_ip")
            else:
                parts = str(port).split(":")
                yield name, parts[0] if len(parts) == 3 else None


@pytest.mark.parametrize("env_source", ["defaults", "env-example"])
def test_compose_publishes_ports_on_loopback_only(env_source: str) -> None:
    env = {name: value for name, value in _env_example().items() if env_source == "env-example" or "PASS" in name}
    env.setdefault("MINIO_ROOT_USER", "user")
    env.setdefault("RAY_AUTH_TOKEN", "token")
    ports = list(_published_ports(_compose(env)))
    assert len(ports) >= 8
    assert all(host == "127.0.0.1" for _, host in ports), ports


def test_compose_bind_address_is_configurable() -> None:
    ports = list(_published_ports(_compose(_env_example() | {"XLM_BIND_ADDRESS": "10.0.0.5"})))
    assert {host for _, host in ports} == {"10.0.0.5"}


def test_compose_healthchecks_and_start_order() -> None:
    services = _compose()["services"]
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shot == {"minio-buckets"}
    for name, service in services.items():
        if name not in one_shot:
            assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
    assert set(services["prefect-worker"]["depends_on"]) == {"prefect-server", "mlflow", "ray-head"}
    assert set(services["mlflow"]["depends_on"]) == {"postgres", "minio-buckets"}


def test_compose_services_use_postgres_and_s3() -> None:
    compose = _compose()
    services = compose["services"]
    prefect = services["prefect-server"]
    assert prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")
    assert prefect["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"

    mlflow = services["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    destination = mlflow["command"][mlflow["command"].index("--artifacts-destination") + 1]
    bucket = destination.removeprefix("s3://").split("/")[0]
    assert destination.startswith("s3://")

    buckets = " ".join(services["minio-buckets"]["command"])
    env = services["minio-buckets"]["environment"]
    assert env["MLFLOW_BUCKET"] == bucket
    assert "store/$MLFLOW_BUCKET" in buckets and "store/$CHECKPOINT_BUCKET" in buckets

    databases = services["postgres"]["environment"]["XLM_DATABASES"].split()
    assert sorted(databases) == ["mlflow", "prefect"]
    init_dir = COMPOSE_FILE.parent / "postgres-init"
    assert any(path.suffix == ".sh" for path in init_dir.iterdir())

    for name in ("ray-head", "prefect-worker"):
        env = services[name]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["RAY_AUTH_MODE"] == "token"
        assert "/data" in {volume.split(":")[1] for volume in services[name]["volumes"]}


def test_compose_commands_parse_with_the_real_clis() -> None:
    from mlflow.cli import cli as mlflow_cli
    from prefect.cli.server import server_app
    from prefect.cli.worker import worker_app
    from ray.scripts.scripts import cli as ray_cli

    services = _compose()["services"]
    assert services["prefect-server"]["command"][:3] == ["prefect", "server", "start"]
    server_app.parse_args(services["prefect-server"]["command"][2:], exit_on_error=False)

    worker = services["prefect-worker"]["command"]
    assert worker[:3] == ["prefect", "worker", "start"]
    _, bound, _ = worker_app.parse_args(worker[2:], exit_on_error=False)
    assert bound.arguments["work_pool_name"] == POOL_NAME
    assert bound.arguments["worker_type"] == "process"
    template = Path(str(bound.arguments["base_job_template"]))
    assert (ROOT / template.relative_to(IMAGE_PROJECT_DIR)).resolve() == POOL_TEMPLATE.resolve()

    mlflow = services["mlflow"]["command"]
    assert mlflow[:2] == ["mlflow", "server"]
    mlflow_cli.commands["server"].make_context("server", mlflow[2:])

    head = services["ray-head"]["command"]
    assert head[:2] == ["ray", "start"]
    assert ray_cli.commands["start"].make_context("start", head[2:]).params["head"]
    healthcheck = services["ray-head"]["healthcheck"]["test"]
    ray_cli.commands["health-check"].make_context("health-check", healthcheck[3:])


# --- Dockerfile ------------------------------------------------------------------------------------


def _dockerfile_args(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for m in re.finditer(r"^ARG (\w+)=(.*)$", text, flags=re.M)}


def test_dockerfile_installs_the_project_pins_like_install_sh() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = _dockerfile_args(text)
    pins = _pins()
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["FASTBPE_VERSION"] == pins["fastbpe"]
    install_sh = (ROOT / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert f"FASTBPE_VERSION={args['FASTBPE_VERSION']}" in install_sh
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[-.]", text, flags=re.M)
    assert _pyproject()["project"]["requires-python"].startswith(">=3.11")
    assert "TORCH_INDEX_URL" in args, "the CUDA torch wheel is chosen with a build arg"

    steps = [
        'pip install "torch==${TORCH_VERSION}"',
        "pip install cython",
        'pip install --no-build-isolation "fastBPE==${FASTBPE_VERSION}"',
        'g++ -std=c++11 -pthread -O3 "$src/main.cc"',
        'pip install -e ".[export]"',
    ]
    positions = [text.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "install order differs from scripts/install.sh"
    assert '"$VIRTUAL_ENV/bin/fast"' in text  # xlm_core.data.bpe looks for `fast` beside the interpreter
    extras = _pyproject()["project"]["optional-dependencies"]
    assert "export" in extras
    for requirement in args["SERVER_EXTRAS"].split():
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", requirement), requirement
    assert re.search(r"^USER xlm$", text, flags=re.M), "the image runs as a non-root user"
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").split()
    assert {".git", ".venv", "work", "infra/compose/.env"} <= set(ignored)


# --- Kubernetes / KubeRay --------------------------------------------------------------------------


def _kuberay_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERAY.glob("*.yaml")) for doc in _load_all(path)]


def _cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in _kuberay_docs():
        if doc["kind"] == "RayCluster":
            specs.append((f"RayCluster/{doc['metadata']['name']}", doc["spec"]))
        elif doc["kind"] == "RayJob":
            specs.append((f"RayJob/{doc['metadata']['name']}", doc["spec"]["rayClusterSpec"]))
    return specs


def _pod_templates() -> list[tuple[str, dict[str, Any]]]:
    templates = []
    for owner, spec in _cluster_specs():
        templates.append((f"{owner}/head", spec["headGroupSpec"]["template"]))
        for group in spec["workerGroupSpecs"]:
            templates.append((f"{owner}/{group['groupName']}", group["template"]))
    return templates


def test_core_kubernetes_objects_validate_against_kubernetes_schemas() -> None:
    core = [doc for doc in _kuberay_docs() if doc["apiVersion"] != "ray.io/v1"]
    assert {doc["kind"] for doc in core} == {"ConfigMap", "PersistentVolumeClaim"}
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("owner_and_template", _pod_templates(), ids=lambda item: item[0])
def test_ray_pod_templates_validate_as_pod_template_specs(owner_and_template: tuple[str, dict]) -> None:
    owner, template = owner_and_template
    # A core/v1 PodTemplate wraps exactly a PodTemplateSpec, so its schema checks the embedded template.
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    kubernetes_validate.validate(wrapper, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        broken = copy.deepcopy(wrapper)
        broken["template"]["spec"]["containers"][0]["resourcez"] = {}
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _service_objects() -> tuple[set[str], set[str], str]:
    docs = _kuberay_docs()
    config_maps = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "ConfigMap"}
    claims = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "PersistentVolumeClaim"}
    return config_maps, claims, "/data"


@pytest.mark.parametrize("owner_and_spec", _cluster_specs(), ids=lambda item: item[0])
def test_ray_cluster_specs_describe_8_nodes_of_8_gpus(owner_and_spec: tuple[str, dict]) -> None:
    owner, spec = owner_and_spec
    ray_version = re.search(r"ray\[[^\]]*\]==([\d.]+)", " ".join(_pyproject()["project"]["dependencies"]))
    assert ray_version and spec["rayVersion"] == ray_version.group(1)
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP", "the head stays inside the cluster"
    for group in [head, *spec["workerGroupSpecs"]]:
        assert all(isinstance(value, str) for value in group["rayStartParams"].values()), "KubeRay wants strings"
    port_names = {port["name"] for port in head["template"]["spec"]["containers"][0]["ports"]}
    assert {"gcs-server", "dashboard", "client"} <= port_names

    [gpu_group] = spec["workerGroupSpecs"]
    assert gpu_group["replicas"] == gpu_group["minReplicas"] == gpu_group["maxReplicas"] == 8
    [container] = gpu_group["template"]["spec"]["containers"]
    for kind in ("requests", "limits"):
        assert int(container["resources"][kind]["nvidia.com/gpu"]) == 8
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert gpu_group["replicas"] * 8 == TOTAL_GPUS

    config_maps, claims, mount_path = _service_objects()
    images = set()
    for template in [head["template"], gpu_group["template"]]:
        pod = template["spec"]
        [main] = pod["containers"]
        images.add(main["image"])
        refs = {ref["configMapRef"]["name"] for ref in main["envFrom"] if "configMapRef" in ref}
        assert refs and refs <= config_maps, owner
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        assert volumes[mounts[mount_path]]["persistentVolumeClaim"]["claimName"] in claims
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert len(images) == 1, "head and workers run the same image"


def test_config_map_names_the_service_urls() -> None:
    [config_map] = [doc for doc in _kuberay_docs() if doc["kind"] == "ConfigMap"]
    data = config_map["data"]
    assert data["PREFECT_API_URL"].endswith("/api")
    assert data["MLFLOW_TRACKING_URI"].startswith("http")
    assert data["XLM_PROJECT_DIR"] == IMAGE_PROJECT_DIR


def _xlm_command(entrypoint: str) -> tuple[Any, Any]:
    """Parse an `xlm ...` command line with the project's own CLI parser and config loader."""
    from xlm_cli.main import build_parser
    from xlm_core.config import load_config

    argv = shlex.split(entrypoint)
    assert argv[0] == "xlm"
    args = build_parser().parse_args(argv[1:])
    return args, load_config(ROOT / args.config, args.set)


def test_rayjob_entrypoint_is_a_real_pipeline_run_for_the_cluster() -> None:
    [job] = [doc for doc in _kuberay_docs() if doc["kind"] == "RayJob"]
    spec = job["spec"]
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "SidecarMode"}
    assert spec["shutdownAfterJobFinishes"] is True
    args, config = _xlm_command(spec["entrypoint"])
    assert args.command == "run"
    assert (ROOT / args.config).is_file(), f"{args.config} is not a preset of this project"
    assert config.scaling.num_workers == TOTAL_GPUS
    assert config.scaling.use_gpu is True
    assert config.scaling.ray_address == "auto"
    assert config.checkpoint.storage_path and config.checkpoint.storage_path.startswith("s3://")
    assert str(config.workdir).startswith("/data/")


# --- Ray cluster launcher --------------------------------------------------------------------------


def test_ray_cluster_launcher_yaml_validates_with_rays_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(RAY_LAUNCHER.read_text(encoding="utf-8"))
    schema_file = importlib.resources.files("ray.autoscaler") / "ray-schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    jsonschema.validate(config, schema)
    # What `ray up` does before launching anything: fill in the provider defaults, then validate.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_ray_cluster_launcher_has_8_gpu_nodes_and_a_loopback_dashboard() -> None:
    config = yaml.safe_load(RAY_LAUNCHER.read_text(encoding="utf-8"))
    eight_gpu_instances = {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge"}
    workers = [node for name, node in config["available_node_types"].items() if name != config["head_node_type"]]
    [gpu] = workers
    assert gpu["node_config"]["InstanceType"] in eight_gpu_instances
    assert gpu["min_workers"] == gpu["max_workers"] == config["max_workers"] == 8
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    sources = [ROOT / source for source in config["file_mounts"].values()]
    for source in sources:
        assert source.with_name(source.name + ".example").is_file()
        assert source.name in (source.parent / ".gitignore").read_text(encoding="utf-8").split()
    example = (INFRA / "ray" / "xlm.env.example").read_text(encoding="utf-8")
    assert "RAY_AUTH_MODE=token" in example


# --- Prefect work pool -----------------------------------------------------------------------------


def _pool_template() -> dict[str, Any]:
    return json.loads(POOL_TEMPLATE.read_text(encoding="utf-8"))


def test_work_pool_template_is_accepted_by_prefect() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessJobConfiguration, ProcessVariables, ProcessWorker

    template = _pool_template()
    WorkPoolCreate(name=POOL_NAME, type=ProcessWorker.type, base_job_template=template)
    schema = template["variables"]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(ProcessVariables.model_json_schema()["properties"]) <= set(schema["properties"])
    assert set(template["job_configuration"]) <= set(ProcessJobConfiguration.model_fields)

    # The template references no blocks or Prefect variables, so resolving it makes no API call; a
    # stand-in client keeps Prefect from starting a temporary server to build a real one.
    assert "prefect." not in json.dumps(template["job_configuration"])
    no_api = object()
    config = asyncio.run(
        ProcessJobConfiguration.from_template_and_values(template, {"env": {"EXTRA": "1"}}, client=no_api)
    )
    assert config.stream_output is True
    assert config.env["EXTRA"] == "1"
    defaults = asyncio.run(ProcessJobConfiguration.from_template_and_values(template, {}, client=no_api))
    assert defaults.env["PREFECT_LOGGING_EXTRA_LOGGERS"] == "xlm_core"


def test_deployments_job_variables_fit_the_work_pool_template() -> None:
    from prefect.utilities.schema_tools import validate

    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    schema = _pool_template()["variables"]
    on_pool = [d for d in deployments if d.get("work_pool", {}).get("name") == POOL_NAME]
    assert on_pool, f"no deployment runs on the {POOL_NAME} pool"
    for deployment in on_pool:
        job_variables = deployment["work_pool"].get("job_variables", {})
        validate(job_variables, schema, raise_on_error=True, preprocess=True, ignore_required=True)


def _bash_commands(markdown: str) -> Iterator[str]:
    """The commands of the ```bash blocks, with backslash continuations joined."""
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        yield from re.sub(r"\\\n\s*", " ", block).splitlines()


def test_documented_xlm_commands_parse_and_name_real_config_keys() -> None:
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    launcher_comments = "\n".join(
        line.lstrip("# ") for line in RAY_LAUNCHER.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    )
    commands = [*_bash_commands(readme), *re.sub(r"\\\n\s*", " ", launcher_comments).splitlines()]
    runs = [line[line.index("xlm run") :].split(" #")[0] for line in commands if "xlm run" in line]
    assert len(runs) >= 2
    for run in runs:
        args, _ = _xlm_command(run)
        assert args.command == "run"

    from xlm_core.config import load_config

    [overrides] = re.findall(r"--param overrides='(\{.*?\})'", readme, flags=re.S)
    config = load_config(ROOT / "configs" / "presets" / "xlm-mlm-tlm-xnli15-1024.yaml", json.loads(overrides))
    assert config.scaling.ray_address and config.checkpoint.storage_path.startswith("s3://")


def test_readme_documents_running_on_a_cluster() -> None:
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    assert "## Running on a cluster" in readme
    assert "local/serve-ui.sh" in readme
    for needle in (
        "docker compose",
        "prefect work-pool create xlm-process",
        "PREFECT_API_URL",
        "MLFLOW_TRACKING_URI",
        "scaling.ray_address",
        "checkpoint.storage_path",
        "ray up infra/ray/cluster.yaml",
        "kubectl",
    ):
        assert needle in readme, needle

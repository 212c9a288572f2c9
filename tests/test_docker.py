"""docker/: the compose stack a lab puts on a GPU host, checked without a Docker engine.

The compose file against the Compose Specification's JSON schema (check-jsonschema's vendored copy, no network),
the Dockerfile with hadolint, the MLflow entrypoint script by running it, and the security properties by reading the
file: no default secrets, nothing published beyond loopback by default, MLflow basic auth and Ray token auth on,
one GPU per worker container, read-only data everywhere trials run, pinned images, health checks and restarts.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "mlflow-entrypoint.sh"
ENV_EXAMPLE = DOCKER / ".env.example"

# The values compose must refuse to start without.
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "RAY_AUTH_TOKEN",
}
# Environment variable names that carry a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY(_|$)|ACCESS_KEY|CREDENTIAL")
# Services that run once and exit; every other service is long-running.
ONE_SHOT = {"create-bucket", "driver"}
LOOPBACK = "127.0.0.1"

INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
REQUIRED_FORM = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}$")


def tool(name: str) -> str:
    """A command-line tool from the test extra: on PATH or beside this Python (an unactivated venv)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[test]' (it is in the test extra)")
    return found


def with_defaults(value: str) -> str:
    """What compose makes of a value when the operator sets only the required variables: ${X:-d} -> d,
    ${X:?msg} -> <X>, ${X} -> '', $$ -> $."""

    def one(m: re.Match[str]) -> str:
        op, arg = m.group("op"), m.group("arg") or ""
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<{m.group('name')}>"
        if op in (":+", "+"):
            return arg
        return ""

    return INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)  # resolves the YAML anchors and `<<` merges as compose does


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def option(cmd: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` in a command."""
    for i, arg in enumerate(cmd):
        if arg == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def ray_nodes(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if command(s)[:2] == ["ray", "start"]}


def ray_workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in ray_nodes(services).items() if "--head" not in command(s)}


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    return reservations.get("devices") or []


# --- validators --------------------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  web:\n    image: nginx:1.27.0\n    restart: sometimes\n    prots: ['80:80']\n")
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_rejects_an_unpinned_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install --no-cache-dir ray\n")
    proc = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout, proc.stdout


def test_dockerfile_ignores_no_rule_without_saying_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: an inline hadolint ignore needs a comment above it saying why"
            )


# --- images ------------------------------------------------------------------------------------------------------


def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def test_every_image_is_pinned(services: dict[str, dict[str, Any]], text: str) -> None:
    assert ":latest" not in text
    for name, service in services.items():
        assert "image" in service, f"{name}: no image tag (a built image needs one too)"
        image = with_defaults(service["image"])
        assert pinned(image), f"{name}: image {image!r} is not pinned to a version"
    for line in DOCKERFILE.read_text().splitlines():
        if line.upper().startswith("FROM "):
            base = line.split()[1]
            assert pinned(base), f"Dockerfile: base image {base!r} is not pinned"


def test_pin_check_can_fail() -> None:
    assert not pinned("minio/minio:latest")
    assert not pinned("postgres")
    assert not pinned("registry:5000/minio")
    assert pinned("postgres:16.4-bookworm")


# --- secrets -----------------------------------------------------------------------------------------------------


def test_no_secret_has_a_default(services: dict[str, dict[str, Any]], text: str) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_FORM.match(value), f"{name}: {key}={value!r} must be ${{VAR:?message}}"
    # Nowhere in the file (commands, container-side shell) may a secret-looking variable fall back to a default.
    for m in INTERPOLATION.finditer(text):
        if SECRET_NAME.search(m.group("name")) or m.group("name") in REQUIRED_SECRETS:
            assert m.group("op") == ":?", f"{m.group(0)} must use :? (no default, not optional)"
    for m in re.finditer(r"\$\$\{(\w+)(:?[-=])", text):
        assert not SECRET_NAME.search(m.group(1)), f"container-side default for {m.group(1)}"
    # No credentials written into a URI.
    assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", text), "a URI in compose.yaml carries a password"


def test_compose_refuses_to_start_without_each_secret(text: str) -> None:
    required = {m.group("name") for m in INTERPOLATION.finditer(text) if m.group("op") == ":?"}
    assert REQUIRED_SECRETS <= required, f"not required: {sorted(REQUIRED_SECRETS - required)}"


def test_secret_check_can_fail() -> None:
    assert not REQUIRED_FORM.match("${POSTGRES_PASSWORD:-mlflow}")
    assert not REQUIRED_FORM.match("mlflow-secret")
    assert REQUIRED_FORM.match("${POSTGRES_PASSWORD:?set it}")
    assert SECRET_NAME.search("AWS_SECRET_ACCESS_KEY") and SECRET_NAME.search("AWS_ACCESS_KEY_ID")
    assert not SECRET_NAME.search("MLFLOW_AUTH_CONFIG_PATH")


def test_env_example_lists_every_required_value_empty() -> None:
    compose_text = COMPOSE.read_text()
    compose_required = {m.group("name") for m in INTERPOLATION.finditer(compose_text) if m.group("op") == ":?"}
    assigned: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            assigned[key.strip()] = value.strip()
    missing = sorted(compose_required - assigned.keys())
    assert not missing, f"missing from .env.example: {missing}"
    # An unedited copy must not start: every required value is left empty.
    assert {k: v for k, v in assigned.items() if k in compose_required and v} == {}
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


# --- network exposure --------------------------------------------------------------------------------------------

PUBLISHED = re.compile(r"^(127\.0\.0\.1|\$\{[A-Z_]+:-127\.0\.0\.1\}):\d+:\d+(/tcp|/udp)?$")


def test_published_ports_listen_on_loopback_by_default(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports") or []:
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") in (LOOPBACK, "${BIND_ADDRESS:-127.0.0.1}"), f"{name}: {port}"
            else:
                assert PUBLISHED.match(str(port)), f"{name}: port {port!r} is not bound to 127.0.0.1 by default"
        assert "network_mode" not in service or service["network_mode"] != "host", f"{name}: host networking"
    assert published >= 1
    for infra in ("postgres", "minio"):
        assert not services[infra].get("ports"), f"{infra} must stay on the compose network"


def test_port_check_can_fail() -> None:
    for bad in ("5000:5000", "0.0.0.0:5000:5000", "${BIND_ADDRESS:-0.0.0.0}:5000:5000", "5000"):
        assert not PUBLISHED.match(bad)


# --- MLflow ------------------------------------------------------------------------------------------------------


def test_mlflow_server_runs_basic_auth(services: dict[str, dict[str, Any]]) -> None:
    mlflow = services["mlflow"]
    cmd = command(mlflow)
    assert cmd[:2] == ["mlflow", "server"]
    assert option(cmd, "--app-name") == "basic-auth"
    env = environment(mlflow)
    assert REQUIRED_FORM.match(env["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    assert REQUIRED_FORM.match(env["MLFLOW_ADMIN_PASSWORD"])
    assert env["MLFLOW_AUTH_CONFIG_PATH"].startswith("/tmp/"), "the generated config (with the password) on tmpfs"
    assert "/tmp" in (mlflow.get("tmpfs") or [])
    assert mlflow["entrypoint"] == ["mlflow-entrypoint"]
    dockerfile = DOCKERFILE.read_text()
    assert '"mlflow[auth]' in dockerfile
    assert "docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint" in dockerfile
    assert os.access(ENTRYPOINT, os.X_OK)
    # The database passwords reach it through the environment, never the command line.
    assert not any("@" in arg and ":" in arg.split("@")[0].split("//")[-1] for arg in cmd)


def test_mlflow_server_answers_its_service_name_and_loopback(services: dict[str, dict[str, Any]]) -> None:
    allowed = with_defaults(option(command(services["mlflow"]), "--allowed-hosts") or "").split(",")
    assert allowed != [""], "--allowed-hosts missing"
    for host in ("mlflow:5000", "mlflow", "localhost:5000", "127.0.0.1:5000"):
        assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), f"{host} not in --allowed-hosts {allowed}"
    assert "*" not in allowed


def test_trial_containers_log_in_to_mlflow(services: dict[str, dict[str, Any]]) -> None:
    clients = {**ray_nodes(services), "driver": services["driver"]}
    for name, service in clients.items():
        env = environment(service)
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        assert env.get("MLFLOW_TRACKING_USERNAME"), name
        assert REQUIRED_FORM.match(env.get("MLFLOW_TRACKING_PASSWORD", "")), name
        # Only the MLflow server holds the S3 keys: it proxies artifacts.
        assert not any(k.startswith("AWS_") for k in env), f"{name} needs no S3 keys"


def run_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    probe = 'printf "%s|%s" "$MLFLOW_AUTH_CONFIG_PATH" "${MLFLOW_ADMIN_PASSWORD:-unset}"'
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", probe], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def test_entrypoint_writes_the_auth_config_mlflow_reads(tmp_path: Path) -> None:
    config = tmp_path / "auth" / "basic_auth.ini"
    password = 'p%ss w0rd "with" $pecial\\chars'
    proc = run_entrypoint(
        tmp_path,
        MLFLOW_AUTH_CONFIG_PATH=str(config),
        MLFLOW_ADMIN_PASSWORD=password,
        MLFLOW_ADMIN_USERNAME="root-user",
        MLFLOW_AUTH_DATABASE_URI="postgresql+psycopg2://mlflow@postgres:5432/mlflow_auth",
        MLFLOW_FLASK_SERVER_SECRET_KEY="k" * 32,
    )
    assert proc.returncode == 0, proc.stderr
    # It runs the given command, without the password left in that command's environment.
    assert proc.stdout == f"{config}|unset"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    parser = configparser.ConfigParser()  # as mlflow.server.auth.config.read_auth_config reads it
    parser.read(config)
    section = parser["mlflow"]
    assert section["admin_password"] == password
    assert section["admin_username"] == "root-user"
    assert section["database_uri"] == "postgresql+psycopg2://mlflow@postgres:5432/mlflow_auth"
    assert section["default_permission"] == "READ"
    assert section["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"


def test_entrypoint_config_is_what_mlflow_itself_reads(tmp_path: Path) -> None:
    config = tmp_path / "basic_auth.ini"
    proc = run_entrypoint(
        tmp_path,
        MLFLOW_AUTH_CONFIG_PATH=str(config),
        MLFLOW_ADMIN_PASSWORD="a%b" * 5,
        MLFLOW_AUTH_DATABASE_URI="sqlite:///auth.db",
        MLFLOW_FLASK_SERVER_SECRET_KEY="k" * 32,
    )
    assert proc.returncode == 0, proc.stderr
    read = (
        "from mlflow.server.auth.config import read_auth_config as r; c = r(); "
        "print(c.admin_username, c.admin_password, c.database_uri, c.authorization_function)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_AUTH_ADMIN")}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", read], env={**env, "MLFLOW_AUTH_CONFIG_PATH": str(config)},
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "admin", "a%b" * 5, "sqlite:///auth.db", "mlflow.server.auth:authenticate_request_basic_auth"
    ]


@pytest.mark.parametrize("missing", ["MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"])
def test_entrypoint_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini"),
        "MLFLOW_ADMIN_PASSWORD": "x" * 16,
        "MLFLOW_AUTH_DATABASE_URI": "sqlite:///auth.db",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
    }
    env[missing] = ""
    proc = run_entrypoint(tmp_path, **env)
    assert proc.returncode != 0
    assert missing in proc.stderr
    assert not (tmp_path / "basic_auth.ini").exists()


# --- Ray ---------------------------------------------------------------------------------------------------------


def test_ray_token_auth_on_every_node_and_client(services: dict[str, dict[str, Any]], text: str) -> None:
    assert "disabled" not in text
    nodes = ray_nodes(services)
    assert "ray-head" in nodes and len(ray_workers(services)) >= 1
    for name, service in {**nodes, "driver": services["driver"]}.items():
        env = environment(service)
        assert env.get("RAY_AUTH_MODE") == "token", f"{name}: RAY_AUTH_MODE={env.get('RAY_AUTH_MODE')!r}"
        token = REQUIRED_FORM.match(env.get("RAY_AUTH_TOKEN", ""))
        assert token and token.group("name") == "RAY_AUTH_TOKEN", f"{name}: RAY_AUTH_TOKEN needs ${{RAY_AUTH_TOKEN:?}}"
    tokens = {environment(s)["RAY_AUTH_TOKEN"] for s in {**nodes, "driver": services["driver"]}.values()}
    assert len(tokens) == 1, "one shared token"


def test_every_ray_worker_mounts_the_data_read_only(services: dict[str, dict[str, Any]]) -> None:
    runs_trials = {**ray_nodes(services), "driver": services["driver"]}
    sources = set()
    for name, service in runs_trials.items():
        mounts = [with_defaults(str(v)).split(":") for v in service.get("volumes") or []]
        data = [m for m in mounts if len(m) > 1 and m[1] == "/data"]
        assert len(data) == 1, f"{name}: no data volume at /data: {service.get('volumes')}"
        assert data[0][2:] == ["ro"], f"{name}: {':'.join(data[0])} is not read-only"
        sources.add(data[0][0])
    assert len(sources) == 1, f"every node sees the same data: {sources}"


def test_each_worker_gets_its_own_gpu(services: dict[str, dict[str, Any]], text: str) -> None:
    assert not re.search(r"count:\s*['\"]?all", text)
    workers = ray_workers(services)
    assert len(workers) >= 2
    claimed: dict[str, str] = {}
    for name, service in workers.items():
        devices = gpu_devices(service)
        assert len(devices) == 1, f"{name}: {devices}"
        device = devices[0]
        assert device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", []), name
        assert "count" not in device, f"{name}: count instead of device_ids"
        ids = [str(i) for i in device.get("device_ids") or []]
        assert ids, f"{name}: no device_ids"
        for gpu in ids:
            assert gpu not in claimed, f"GPU {gpu} given to both {claimed[gpu]} and {name}"
            claimed[gpu] = name
        assert service.get("shm_size"), name
    # ray-worker-gpuN holds GPU N; gpu0 always starts, the others when the operator enables their profile.
    for name, service in workers.items():
        n = re.fullmatch(r"ray-worker-gpu(\d+)", name)
        assert n, f"{name}: name a worker after its GPU"
        assert [str(i) for i in gpu_devices(service)[0]["device_ids"]] == [n.group(1)]
        assert service.get("profiles", []) == ([] if n.group(1) == "0" else [f"gpu{n.group(1)}"])
    for name, service in services.items():
        if name not in workers:
            assert not gpu_devices(service), f"{name} reserves a GPU"


def test_gpu_check_can_fail() -> None:
    shared = {"deploy": {"resources": {"reservations": {"devices": [{"driver": "nvidia", "count": "all"}]}}}}
    assert "count" in gpu_devices(shared)[0]


# --- health and restarts -----------------------------------------------------------------------------------------


def test_every_service_has_a_healthcheck_and_a_restart_policy(services: dict[str, dict[str, Any]]) -> None:
    assert ONE_SHOT <= services.keys()
    for name, service in services.items():
        health = service.get("healthcheck")
        assert health is not None, f"{name}: no healthcheck"
        if name in ONE_SHOT:
            assert health == {"disable": True}, name
            assert service.get("restart") in ("no", "on-failure"), name
        else:
            assert not health.get("disable") and health.get("test"), f"{name}: healthcheck without a test"
            assert health["test"][0] in ("CMD", "CMD-SHELL"), name
            assert service.get("restart") in ("always", "unless-stopped"), f"{name}: restart={service.get('restart')}"


def test_health_checks_probe_the_service(services: dict[str, dict[str, Any]]) -> None:
    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"][1:])

    assert "pg_isready" in probe("postgres")
    assert "mc ready" in probe("minio")
    assert "/health" in probe("mlflow") and ":5000" in probe("mlflow")
    assert probe("ray-head").startswith("ray health-check")
    for name in ray_workers(services):
        assert probe(name).startswith("ray health-check"), name


def test_services_start_in_order(services: dict[str, dict[str, Any]]) -> None:
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert services["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in [*ray_workers(services), "driver"]:
        assert services[name]["depends_on"]["ray-head"]["condition"] == "service_healthy", name
        assert services[name]["depends_on"]["mlflow"]["condition"] == "service_healthy", name

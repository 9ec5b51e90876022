"""The container deployment (docker/compose.yaml + docker/Dockerfile) stays wired together.

Static checks parse the files with PyYAML; the `docker compose config` checks run only where
the Compose v2 plugin is installed (no Docker engine is needed for them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.integration  # a real broker, store or processes

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
POM = ROOT / "broker" / "pom.xml"

# service -> riskcockpit subcommand it must run
APP_SERVICES = {
    "worker-1": "worker",
    "worker-2": "worker",
    "sink": "sink",
    "cockpit": "cockpit",
    "generator": "generate",
}
INFRA = ("kafka", "clickhouse")

_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def with_defaults(value) -> str:
    """``${VAR:-default}`` -> ``default`` (what Compose uses when VAR is unset)."""
    return _DEFAULT.sub(lambda m: m.group(2) or "", str(value))


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: with_defaults(value) for key, value in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_expected_services_exist(services):
    for name in (*INFRA, *APP_SERVICES):
        assert name in services, f"service {name!r} missing from {COMPOSE_FILE.name}"
    workers = [n for n, s in services.items() if (s.get("command") or [None])[0] == "worker"]
    count = sum(int((services[n].get("deploy") or {}).get("replicas", 1)) for n in workers)
    assert count >= 2, f"expected at least two stream workers, found {workers}"


def test_app_services_share_one_image_and_the_riskcockpit_entrypoint(services):
    text = DOCKERFILE.read_text(encoding="utf-8")
    entrypoints = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert entrypoints and json.loads(entrypoints[-1]) == ["riskcockpit"]
    images = set()
    for name, subcommand in APP_SERVICES.items():
        service = services[name]
        assert "entrypoint" not in service, f"{name} must keep the image's riskcockpit entrypoint"
        assert service["command"][0] == subcommand, f"{name} runs {service['command']!r}"
        build = service["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
        images.add(service.get("image"))
    assert len(images) == 1, f"app services should tag one image, got {images}"


def test_dockerfile_basics():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"pip install --no-cache-dir \.", text)
    assert re.search(r"^COPY config/ /etc/riskcockpit/?$", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "image must not run as root"
    assert (DOCKER / "Dockerfile.dockerignore").is_file(), "BuildKit ignore file sits next to the Dockerfile"


def test_environment_points_at_the_compose_services(compose, services):
    shared = {k: with_defaults(v) for k, v in compose["x-riskcockpit-env"].items()}
    kafka = env_of(services["kafka"])
    clickhouse = env_of(services["clickhouse"])
    for name in APP_SERVICES:
        env = env_of(services[name])
        for key, value in shared.items():
            assert env.get(key) == value, f"{name}: {key} not taken from x-riskcockpit-env"

        assert env["RISKCOCKPIT_KAFKA"] == f"{kafka['RISKCOCKPIT_KAFKA__ADVERTISED_HOST']}:{kafka['RISKCOCKPIT_KAFKA__PORT']}"

        url = urlsplit(env["RISKCOCKPIT_CLICKHOUSE_URL"])
        assert (url.scheme, url.hostname, url.port) == ("http", "clickhouse", 8123)
        assert url.username == clickhouse["CLICKHOUSE_USER"]
        assert url.password == clickhouse["CLICKHOUSE_PASSWORD"]
        assert url.path.strip("/") == clickhouse["CLICKHOUSE_DB"]

        assert env["RISKCOCKPIT_CONFIG_DIR"] == "/etc/riskcockpit"
        assert env["RISKCOCKPIT_DATA_DIR"] == "/var/lib/riskcockpit"


def test_partitions_agree_between_kafka_and_the_app(services):
    broker = env_of(services["kafka"])["RISKCOCKPIT_KAFKA__PARTITIONS"]
    assert broker == "4"
    for name in APP_SERVICES:
        assert env_of(services[name])["RISKCOCKPIT_KAFKA__PARTITIONS"] == broker


def test_dependencies_wait_for_healthy_services(services):
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        needed = ("kafka",) if name == "generator" else INFRA
        for dependency in needed:
            assert depends[dependency]["condition"] == "service_healthy", f"{name} -> {dependency}"
        for dependency in depends:
            assert services[dependency].get("healthcheck", {}).get("test"), f"{dependency} has no healthcheck"
        assert services[name]["restart"] == "unless-stopped"


# service -> the principal it talks to Kafka as
PRINCIPALS = {"worker-1": "worker", "worker-2": "worker", "sink": "sink", "cockpit": "cockpit",
              "notifier": "notifier", "generator": "ingest"}


def test_kafka_is_the_secured_embedded_broker(services):
    kafka = services["kafka"]
    assert kafka["command"] == ["kafka", "start", "--secure", "--foreground"]
    assert kafka["build"]["target"] == "broker" and (ROOT / kafka["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert re.search(r"^FROM .* AS broker$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert env_of(kafka)["RISKCOCKPIT_KAFKA__HOST"] == "0.0.0.0"
    assert kafka["healthcheck"]["test"] == ["CMD", "riskcockpit", "kafka", "status"]
    assert any(v.split(":")[0] == "kafka-data" and v.endswith(":/var/lib/riskcockpit") for v in kafka["volumes"])


def test_every_component_has_its_own_principal_and_a_password_compose_requires(services):
    from riskcockpit.broker import OPERATOR, grants
    handed = services["kafka"]["environment"]
    for principal in (OPERATOR, *grants()):
        assert handed[f"RISKCOCKPIT_KAFKA_PASSWORD_{principal.upper()}"].startswith(
            f"${{KAFKA_{principal.upper()}_PASSWORD:?"), f"{principal}'s password must be required, not defaulted"
    for name, principal in PRINCIPALS.items():
        env = services[name]["environment"]
        assert env["RISKCOCKPIT_KAFKA__USERNAME"] == principal, name
        assert env["RISKCOCKPIT_KAFKA__PASSWORD"] == handed[f"RISKCOCKPIT_KAFKA_PASSWORD_{principal.upper()}"], name
        assert env_of(services[name])["RISKCOCKPIT_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"


def test_the_broker_image_runs_the_kafka_version_the_tests_run(services):
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY broker/pom.xml" in text and "RISKCOCKPIT_BROKER_DIR=/opt/riskcockpit/broker" in text
    assert "broker/lib" in (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()


def test_clickhouse_credentials_are_configurable(services):
    clickhouse = services["clickhouse"]
    assert clickhouse["image"].startswith("clickhouse/clickhouse-server:")
    raw = clickhouse["environment"]
    assert raw["CLICKHOUSE_PASSWORD"].startswith("${CLICKHOUSE_PASSWORD"), "password must come from the environment"
    assert raw["CLICKHOUSE_USER"].startswith("${CLICKHOUSE_USER")
    assert clickhouse["ulimits"]["nofile"]["soft"] >= 262144
    assert any(v.split(":")[0] == "clickhouse-data" for v in clickhouse["volumes"])
    for volume in clickhouse["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (DOCKER / source).is_file(), f"bind-mounted {source} missing"


def test_cockpit_is_published_and_listens_on_all_interfaces(services):
    cockpit = services["cockpit"]
    assert "8050:8050" in [str(p) for p in cockpit["ports"]]
    assert env_of(cockpit)["RISKCOCKPIT_COCKPIT__HOST"] == "0.0.0.0"


def test_generator_only_runs_in_the_demo_profile(services):
    assert services["generator"]["profiles"] == ["demo"]
    for name, service in services.items():
        if name != "generator":
            assert "profiles" not in service, f"{name} would not start by default"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


# --- docker compose itself (needs only the Compose v2 CLI plugin, no engine) --------------


def _compose_cli() -> list[str]:
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("docker CLI not installed")
    try:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"`docker compose version` failed: {exc}")
    if probe.returncode != 0:
        pytest.skip("Compose v2 plugin absent (`docker compose version` failed)")
    return [docker, "compose", "-f", str(COMPOSE_FILE)]


def _clean_env() -> dict[str, str]:
    """Drop overrides from the caller's shell so Compose uses the file's defaults; the Kafka
    passwords, which have none, as a deployment's docker/.env would give them."""
    from riskcockpit.broker import OPERATOR, grants
    prefixes = ("RISKCOCKPIT_", "CLICKHOUSE_", "KAFKA_", "COMPOSE_", "GENERATOR_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} | {
        f"KAFKA_{p.upper()}_PASSWORD": f"{p}-secret" for p in (OPERATOR, *grants())}


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]], ids=["default", "demo"])
def test_docker_compose_config_is_valid(profile):
    cli = _compose_cli()
    result = subprocess.run(
        [*cli, *profile, "config", "-q"], capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_resolves_the_wiring():
    cli = _compose_cli()
    result = subprocess.run(
        [*cli, "--env-file", os.devnull, "--profile", "demo", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    services = resolved["services"]
    assert set(APP_SERVICES) | set(INFRA) <= set(services)
    assert services["generator"]["command"] == ["generate", "--rate", "200"]
    assert services["kafka"]["environment"]["RISKCOCKPIT_KAFKA__PARTITIONS"] == "4"
    assert services["worker-1"]["environment"]["RISKCOCKPIT_KAFKA__PASSWORD"] == "worker-secret"
    cockpit = services["cockpit"]
    assert cockpit["environment"]["RISKCOCKPIT_KAFKA"] == "kafka:9092"
    assert urlsplit(cockpit["environment"]["RISKCOCKPIT_CLICKHOUSE_URL"]).hostname == "clickhouse"
    assert cockpit["build"]["context"] == str(ROOT)
    assert cockpit["depends_on"]["kafka"]["condition"] == "service_healthy"

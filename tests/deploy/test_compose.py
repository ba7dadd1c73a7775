"""deploy/compose.yaml, offline (no Docker engine): valid against the Compose Specification's
schema, the services the deployment promises, every file it mounts present, its gateway config
accepted by ``switchyard check``, secrets only ever mounted, and its parts pointing at each other."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.cli import main as switchyard
from gateway.cli import secrets_from_files
from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"
REPLICAS = ["switchyard-1", "switchyard-2", "switchyard-3"]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(node: Any) -> Any:
    """Compose's ``${VAR:-default}`` with nothing set: every variable takes its default."""
    if isinstance(node, str):
        return _VAR.sub(lambda m: m.group(2) or "", node)
    if isinstance(node, list):
        return [_interpolate(v) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate(v) for k, v in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()))


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str, bool]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith("."):
            mounts.append(((DEPLOY / source).resolve(), target, "ro" in mode))
    return mounts


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # And the schema is not a rubber stamp: an unknown service key is refused.
    broken = {**compose, "services": {**compose["services"], "nginx": {**compose["services"]["nginx"], "imgae": "x"}}}
    assert list(validator.iter_errors(broken))


def test_the_stack_has_every_service_the_deployment_promises(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        *REPLICAS,
        "migrate",
        "nginx",
        "redis",
        "postgres",
        "llama-cpp",
        "prometheus",
        "grafana",
        "otel-collector",
    }
    for name in [*REPLICAS, "migrate"]:
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["image"] == services[REPLICAS[0]]["image"]
    assert services["llama-cpp"]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    assert services["llama-cpp"]["environment"]["LLAMA_ARG_MODEL"].startswith("/models/")
    assert services["redis"]["image"].startswith("redis:") and services["postgres"]["image"].startswith("postgres:")
    # Redis holds budgets: persisted, and never evicted to make room.
    assert "--appendonly" in services["redis"]["command"] and "noeviction" in services["redis"]["command"]
    for service in services.values():  # exact versions, never a moving "latest"
        assert ":" in service["image"] and not service["image"].endswith(":latest")


def test_the_commented_vllm_variant_is_a_valid_gpu_service(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    block = text.split("# vllm-begin\n", 1)[1].split("# vllm-end", 1)[0]
    uncommented = "\n".join(line.replace("  # ", "  ", 1) for line in block.splitlines())
    vllm = yaml.safe_load(uncommented)["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    device = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate({"services": {"vllm": vllm}})
    served = vllm["command"][vllm["command"].index("--served-model-name") + 1]
    config = load_config(DEPLOY / "config" / "switchyard.yaml", environ={"SWITCHYARD_MASTER_KEY": "k", "POSTGRES_PASSWORD": "p"})
    deployment = config.deployment("vllm-llama-8b")
    assert deployment is not None and deployment.model == served and "vllm:8000" in str(deployment.base_url)


def test_every_mounted_file_exists_and_is_mounted_read_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source, target, read_only in _bind_mounts(service):
            assert source.exists(), f"{name}: {source} does not exist"
            if "models" not in str(source):
                assert read_only, f"{name}: {target} should be mounted read-only"


def test_the_replicas_config_passes_switchyard_check_with_the_mounted_secrets(compose: dict[str, Any], tmp_path: Path) -> None:
    replica = compose["services"][REPLICAS[0]]
    (config_source,) = [s for s, t, _ in _bind_mounts(replica) if t == "/etc/switchyard/switchyard.yaml"]
    command = yaml.safe_load((DEPLOY / "Dockerfile").read_text().split("\nCMD ", 1)[1].splitlines()[0])
    assert command[command.index("--config") + 1] == "/etc/switchyard/switchyard.yaml"
    # The container's environment, with each secret file under /run/secrets replaced by a temp file.
    environ: dict[str, str] = {}
    for key, value in replica["environment"].items():
        if value.startswith("/run/secrets/"):
            secret = tmp_path / value.rsplit("/", 1)[1]
            secret.write_text(f"value-of-{secret.name}\n")
            value = str(secret)
        environ[key] = value
    assert secrets_from_files(config_source, environ) == ["SWITCHYARD_MASTER_KEY", "POSTGRES_PASSWORD"]
    assert environ["SWITCHYARD_MASTER_KEY"] == "value-of-switchyard_master_key"  # the newline is dropped
    config = load_config(config_source, environ=environ)
    assert config.redis_url == "redis://redis:6379/0" and config.database_url.startswith("postgresql://switchyard:value-of-")
    assert config.server.host == "0.0.0.0"
    # Stopping a container waits longer than the drain.
    assert _seconds(replica["stop_grace_period"]) >= config.server.drain_timeout_s + 10
    # The spool (ledger journal) is a named volume per replica; the root filesystem is read-only.
    spools = {v.split(":")[0] for r in REPLICAS for v in compose["services"][r]["volumes"] if v.endswith(config.ledger.spool_dir)}
    assert spools == {"spool-1", "spool-2", "spool-3"} and spools <= set(compose["volumes"])
    assert replica["read_only"] is True and replica["user"].split(":")[0] != "0"
    # And the CLI agrees, given the container's environment.
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environ.items():
            patch.setenv(key, value)
        assert switchyard(["check", str(config_source)]) == 0


def test_secrets_are_files_never_values_and_never_committed(compose: dict[str, Any]) -> None:
    secretive = re.compile(r"KEY|PASSWORD|TOKEN|SECRET")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secretive.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), f"{name}: {key} holds a secret value"
        for env_file in service.get("env_file", []):
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert path.startswith("./secrets/")
    for secret in compose["secrets"].values():
        path = (DEPLOY / secret["file"]).resolve()
        assert path.parent == DEPLOY / "secrets"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} would be committed"
    assert (
        subprocess.run(
            ["git", "check-ignore", "-q", str(DEPLOY / "secrets" / "provider-keys.env")], cwd=ROOT, check=False
        ).returncode
        == 0
    )


def test_nginx_prometheus_grafana_and_the_collector_point_at_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nginx_conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server\s+(\S+)\s+resolve", nginx_conf, re.MULTILINE)
    assert upstreams == [f"{r}:4000" for r in REPLICAS]
    include = re.search(r"include\s+(\S+);", nginx_conf).group(1)
    assert (DEPLOY / "nginx" / "proxy.conf").resolve() in [s for s, t, _ in _bind_mounts(services["nginx"]) if t == include]
    proxy_conf = (DEPLOY / "nginx" / "proxy.conf").read_text()
    assert re.search(r"^proxy_next_upstream error timeout", proxy_conf, re.MULTILINE) and "non_idempotent" not in re.sub(
        r"#.*", "", proxy_conf
    )

    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "switchyard")
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{r}:4000" for r in REPLICAS]
    assert any(t == "/etc/prometheus" for _, t, _ in _bind_mounts(services["prometheus"]))

    grafana_mounts = {t: s for s, t, _ in _bind_mounts(services["grafana"])}
    assert grafana_mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/switchyard.yaml").read_text())["providers"][0]
    assert grafana_mounts[provider["options"]["path"]] == DEPLOY / "grafana"  # dashboards from deploy/grafana/

    collector = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    for replica in REPLICAS:
        assert services[replica]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_replicas_start_after_migrations_and_their_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for replica in REPLICAS:
        depends = services[replica]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(services[replica]["healthcheck"]["test"])
    assert services["migrate"]["entrypoint"] == ["switchyard", "migrate"]
    assert services["migrate"]["restart"] == "no"


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)

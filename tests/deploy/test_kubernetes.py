"""deploy/kubernetes, offline: rendered like kustomize, every object validated against Kubernetes'
own schemas (kubernetes-validate, strict: unknown fields are errors), then checked for what the
gateway needs to run, drain and reload there."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.cli import main as switchyard
from gateway.config import load_config
from tests.deploy.kustomize import find, load_documents, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release still in mainstream managed offerings when this was written; the
# manifests use nothing newer (the preStop hook is an exec of sleep, not the newer sleep action).
KUBERNETES_VERSION = "1.30"
SECRET_ENV = {
    "SWITCHYARD_MASTER_KEY": "sk-test",
    "SWITCHYARD_DATABASE_URL": "postgresql://switchyard:pw@postgres:5432/switchyard",
    "SWITCHYARD_REDIS_URL": "redis://redis:6379/0",
}


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(K8S)


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment", "switchyard")["spec"]["template"]


def _gateway(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(docs)["spec"]["containers"]
    return container


def _extras() -> list[dict[str, Any]]:
    """Manifests outside the base: the Secret example, the migration Job, the Ingress component."""
    return [
        *load_documents(K8S / "secret.example.yaml"),
        *load_documents(K8S / "jobs" / "migrate.yaml"),
        *render(K8S / "components" / "ingress"),
    ]


def test_every_manifest_is_valid_for_kubernetes(docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ]
    )
    for doc in [*docs, *_extras()]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_what_kubernetes_would(docs: list[dict[str, Any]]) -> None:
    broken = find(docs, "Deployment")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    typo = {**find(docs, "Service"), "spec": {**find(docs, "Service")["spec"], "selektor": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)


def test_the_configmap_config_passes_switchyard_check(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_map = find(docs, "ConfigMap", "switchyard-config")
    (name,) = config_map["data"]
    path = tmp_path / name
    path.write_text(config_map["data"][name])
    for key, value in SECRET_ENV.items():
        monkeypatch.setenv(key, value)
    assert switchyard(["check", str(path)]) == 0
    # Every ${VAR} without a default that the config needs is an env var of the container.
    env_names = {e["name"] for e in _gateway(docs)["env"]}
    assert set(SECRET_ENV) <= env_names


def test_the_deployment_probes_drains_and_runs_locked_down(docs: list[dict[str, Any]]) -> None:
    pod = _pod(docs)["spec"]
    gateway = _gateway(docs)
    probes = {kind: gateway[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    assert {"cpu", "memory"} <= set(gateway["resources"]["requests"]) and "memory" in gateway["resources"]["limits"]

    # Stopping: preStop sleep while the endpoint is removed, then the drain, within the grace period.
    pre_stop = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain_s = _config(docs).server.drain_timeout_s
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain_s + 10

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    context = gateway["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_config_is_mounted_for_hot_reload_and_every_written_path_is_a_volume(docs: list[dict[str, Any]]) -> None:
    gateway = _gateway(docs)
    mounts = {m["mountPath"]: m for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(docs)["spec"]["volumes"]}
    config_path = Path(gateway["args"][gateway["args"].index("--config") + 1])
    config_mount = mounts[str(config_path.parent)]
    # A ConfigMap mounted as a directory is updated in place by the kubelet (a subPath mount never is).
    assert "subPath" not in config_mount and config_mount["readOnly"] is True
    assert volumes[config_mount["name"]]["configMap"]["name"] == "switchyard-config"
    assert config_path.name in find(docs, "ConfigMap", "switchyard-config")["data"]
    # With a read-only root filesystem, the ledger spool and /tmp must be volumes.
    spool = _config(docs).ledger.spool_dir
    assert any(spool == path or spool.startswith(path + "/") for path in mounts)
    assert "/tmp" in mounts
    assert "--host" in gateway["args"] and gateway["args"][gateway["args"].index("--host") + 1] == "0.0.0.0"


def test_service_autoscaler_budget_and_policy_point_at_the_gateway_pods(docs: list[dict[str, Any]]) -> None:
    labels = _pod(docs)["metadata"]["labels"]
    port = _gateway(docs)["ports"][0]
    service = find(docs, "Service")["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == port["name"]
    hpa = find(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "switchyard"}
    assert hpa["minReplicas"] >= 2
    pdb = find(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items() and pdb["maxUnavailable"] == 1
    policy = find(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert {"protocol": "TCP", "port": port["containerPort"]} in policy["ingress"][0]["ports"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 5432, 6379, 443} <= egress_ports


def test_the_secret_example_has_every_key_the_pods_read(docs: list[dict[str, Any]]) -> None:
    secret = load_documents(K8S / "secret.example.yaml")[0]
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for doc in (find(docs, "Deployment"), load_documents(K8S / "jobs" / "migrate.yaml")[0])
        for container in doc["spec"]["template"]["spec"]["containers"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs} <= set(secret["stringData"])
    assert "secret.example.yaml" not in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]


def test_the_optional_ingress_routes_to_the_service_and_streams_unbuffered(docs: list[dict[str, Any]]) -> None:
    ingress = find(render(K8S / "components" / "ingress"), "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = find(docs, "Service")
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert "non_idempotent" not in annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"]
    assert ingress["spec"]["tls"]


def _config(docs: list[dict[str, Any]]):
    config_map = find(docs, "ConfigMap", "switchyard-config")
    (text,) = config_map["data"].values()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "switchyard.yaml"
        path.write_text(text)
        return load_config(path, environ=SECRET_ENV)

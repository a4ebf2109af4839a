"""Checks of the Kubernetes manifests under deploy/k8s.

Every document is validated against the Kubernetes OpenAPI schemas bundled in the
`kubernetes-validate` package (offline, strict: unknown fields are errors), then the
pieces that must fit together are checked structurally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
# Oldest Kubernetes version the manifests must work on, and the newest the package knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _load_documents() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted([*K8S_DIR.glob("*.yaml"), *K8S_DIR.glob("*.yml")]):
        with path.open(encoding="utf-8") as stream:
            for index, doc in enumerate(yaml.safe_load_all(stream)):
                if doc is None:
                    continue
                assert isinstance(doc, dict), f"{path.name}[{index}] is not a mapping"
                docs.append((f"{path.name}[{index}]:{doc.get('kind')}", doc))
    return docs


DOCUMENTS = _load_documents()


def _only(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in DOCUMENTS
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return _only("Deployment", "catalog")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    return named[port]


def test_expected_manifests_present() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCUMENTS)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Job", "Secret", "Service"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("doc_id", "doc"), DOCUMENTS, ids=[doc_id for doc_id, _ in DOCUMENTS])
def test_manifest_matches_kubernetes_schema(version: str, doc_id: str, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(part) for part in error.path)
        pytest.fail(f"{doc_id} invalid for Kubernetes {version} at {path}: {error.message}")


def test_deployment_shape(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert container["image"] == "catalog:latest"
    assert [p["containerPort"] for p in container["ports"]] == [8000]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"cpu", "memory"} <= set(resources["limits"])


def test_deployment_selector_matches_pod_labels(deployment: dict[str, Any]) -> None:
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_deployment_probes(container: dict[str, Any]) -> None:
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/health/ready"
    assert liveness["path"] == "/health"
    assert _port_number(container, readiness["port"]) == 8000
    assert _port_number(container, liveness["port"]) == 8000


def test_deployment_env_from_secret(container: dict[str, Any]) -> None:
    env = _env(container)
    assert env["ENVIRONMENT"]["value"] == "production"
    for key in ("DATABASE_URL", "SECRET_KEY", "REDIS_URL"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {**ref, "name": "catalog-secrets", "key": key}


def test_deployment_security_context(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    pod_security = deployment["spec"]["template"]["spec"].get("securityContext", {})
    security = {**pod_security, **container["securityContext"]}
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False


def test_service_routes_to_deployment_pods(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    service = _only("Service", "catalog")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    selector = service["spec"]["selector"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector
    assert selector.items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == 80
    assert _port_number(container, port["targetPort"]) == 8000


def test_hpa_targets_the_deployment(deployment: dict[str, Any]) -> None:
    hpa = _only("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_migrate_job_runs_catalog_migrate(container: dict[str, Any]) -> None:
    job = _only("Job")
    assert job["spec"]["backoffLimit"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [migrate] = pod["containers"]
    assert [*migrate.get("command", []), *migrate.get("args", [])] == ["catalog", "migrate"]
    assert migrate["image"] == container["image"]
    env = _env(migrate)
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "catalog-secrets"


def test_secret_example_is_marked_and_has_placeholders(container: dict[str, Any]) -> None:
    secret = _only("Secret", "catalog-secrets")
    text = (K8S_DIR / "secret.example.yaml").read_text(encoding="utf-8")
    assert "EXAMPLE ONLY" in text
    assert secret["metadata"]["labels"]["example"] == "true"
    data = secret["stringData"]
    referenced = {
        item["valueFrom"]["secretKeyRef"]["key"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert referenced <= set(data)
    assert all("CHANGE_ME" in value for value in data.values())

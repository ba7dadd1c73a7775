"""The part of kustomize that deploy/kubernetes uses, to render it offline in tests (no kubectl).

Supported: ``resources`` (files), ``components``, ``configMapGenerator`` with ``files`` and the
name hash disabled, ``namespace``, ``labels`` (metadata only) and ``images``. Anything else in a
kustomization is an error here, so a manifest change that needs more cannot pass unrendered.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass"}
KNOWN = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "components",
    "configMapGenerator",
    "images",
    "generatorOptions",
}


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN
    if unknown:
        raise NotImplementedError(f"{directory}/kustomization.yaml: this renderer does not implement {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        docs += load_documents(directory / resource)
    for component in spec.get("components", []):
        docs += render(directory / component)
    for generator in spec.get("configMapGenerator", []):
        if not (generator.get("options") or {}).get("disableNameSuffixHash"):
            raise NotImplementedError("hashed ConfigMap names are not rendered here")
        data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    docs = [copy.deepcopy(doc) for doc in docs]
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        if spec.get("namespace") and doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = spec["namespace"]
        for label_set in spec.get("labels", []):
            if label_set.get("includeSelectors"):
                raise NotImplementedError("labels with includeSelectors")
            meta.setdefault("labels", {}).update(label_set["pairs"])
        for container in _containers(doc):
            for image in spec.get("images", []):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or (
        spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    )
    if not pod:
        return []
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]

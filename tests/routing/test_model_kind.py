"""``kind`` on deployments: a base model never serves a chat (it continues text instead of
answering) but may serve completions; an embedding model serves only embeddings; the plan says why."""

from __future__ import annotations

import dataclasses

from routing.types import DeploymentProfile
from tests.routing.factories import chat, deployment, route, router


def _kind(profile: DeploymentProfile, kind: str) -> DeploymentProfile:
    return dataclasses.replace(profile, kind=kind)


def _router():
    base = _kind(deployment("pretrained", capabilities=("chat", "completions"), quality=5), "base")
    instruct = deployment("instruct", capabilities=("chat", "completions"), quality=1)
    embedder = _kind(deployment("embedder", capabilities=("chat", "completions", "embeddings"), quality=5), "embedding")
    return router([route("auto", ["pretrained", "instruct", "embedder"], objective="best")], [base, instruct, embedder])


def test_chat_never_lands_on_a_base_or_embedding_model() -> None:
    plan = _router().plan(chat("auto", "hello"), {})
    assert plan.deployments == ("instruct",)
    reasons = {e.deployment: e.reason for e in plan.excluded}
    assert "kind base" in reasons["pretrained"] and "kind embedding" in reasons["embedder"]


def test_completions_may_use_a_base_model() -> None:
    plan = _router().plan(chat("auto", endpoint="completions", body={"prompt": "Once upon a time"}), {})
    assert plan.deployments[0] == "pretrained" and "embedder" not in plan.deployments


def test_embeddings_go_to_the_embedding_model() -> None:
    plan = _router().plan(chat("auto", endpoint="embeddings", body={"input": "vector me"}), {})
    assert plan.deployments == ("embedder",)

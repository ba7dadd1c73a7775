"""One refusal table: for every kind of routing refusal, the dry run (/v1/route/explain) names the
same status and code as the real call."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CARD = "4111 1111 1111 1111"
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def _config(upstream: FakeUpstream, tmp_path: Path, projects: list | None = None):
    return make_config(
        {
            **({"projects": projects} if projects else {}),
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [
                fake_deployment("home", upstream.base_url, capabilities=["chat"], context_window=512),
                fake_deployment("away", upstream.base_url, locality="hosted", capabilities=["chat", "vision"]),
            ],
            "routes": [
                {"name": "auto", "candidates": ["home"]},
                {"name": "hosted-only", "candidates": ["away"]},
                {"name": "strict", "candidates": ["away"], "on_violation": "block"},
            ],
            "sensitivity": {"max_scan_bytes": 65536, "over_limit": "refuse"},
        }
    )


CASES = {
    "unknown model": ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, {}),
    "invalid hint": ({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, {"x-switchyard-sensitivity": "bogus"}),
    "policy blocks a pinned model": ({"model": "away", "messages": [{"role": "user", "content": f"card {CARD}"}]}, {}),
    "private data, only hosted candidates": (
        {"model": "hosted-only", "messages": [{"role": "user", "content": f"card {CARD}"}]},
        {},
    ),
    "prompt longer than every window": ({"model": "auto", "messages": [{"role": "user", "content": "word " * 3000}]}, {}),
    "image to text-only": (
        {"model": "home", "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]}]},
        {},
    ),
    "over the scan budget": ({"model": "auto", "messages": [{"role": "user", "content": "word " * 20000}]}, {}),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_explain_names_the_status_and_code_the_real_call_answers_with(
    upstream: FakeUpstream, tmp_path: Path, case: str
) -> None:
    body, headers = CASES[case]
    async with app_client(_config(upstream, tmp_path)) as client:
        dry = await client.post("/v1/route/explain", json=body, headers=headers)
        real = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert real.status_code >= 400, real.text
    error = real.json()["error"]
    assert dry.status_code == 200 and dry.json()["decision"] == "refused", dry.text
    explained = dry.json()["error"]
    assert (explained["status"], explained["code"]) == (real.status_code, error["code"]), case
    assert upstream.records == []  # refused before any backend, in both


async def test_a_project_whose_requirements_leave_no_deployment_gets_the_same_refusal_in_both(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    # the master key's project is the first one; it requires what no deployment declares
    projects = [{"name": "shop", "requires": {"approved_for": "commercial"}}]
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with app_client(_config(upstream, tmp_path, projects)) as client:
        dry = await client.post("/v1/route/explain", json=body)
        real = await client.post("/v1/chat/completions", json=body)
    error = real.json()["error"]
    assert (real.status_code, error["code"], error["type"]) == (403, "policy_violation", "permission_error")
    assert "home: not approved for commercial use (approved_for: none declared)" in error["message"]
    explained = dry.json()["error"]
    assert (explained["status"], explained["code"]) == (real.status_code, error["code"])
    assert upstream.records == []

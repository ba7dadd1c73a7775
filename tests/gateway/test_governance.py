"""Through the app, with the OpenAI SDK and keys of real projects: a project that requires
commercial approval (or a region) never reaches a deployment without it -- not first, not on
fallback when the approved one fails -- and explain names the reason for every exclusion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

ASK = [{"role": "user", "content": "Draft a product description."}]
NOT_COMMERCIAL = "not approved for commercial use (approved_for: internal)"


@pytest.fixture
async def approved() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("approved")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def unapproved() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("unapproved")
    await fake.start()
    yield fake
    await fake.stop()


def _config(tmp_path: Path, approved: FakeUpstream, unapproved: FakeUpstream, approved_model: str = "error-500"):
    """The unapproved deployment is free and listed as the explicit fallback: only the project's
    requirement keeps the commercial project's traffic off it."""
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [
                fake_deployment(
                    "licensed",
                    approved.base_url,
                    model=approved_model,
                    license="apache-2.0",
                    approved_for=["internal", "commercial"],
                    region="eu-west-1",
                    pricing={"input_per_mtok": 1, "output_per_mtok": 1},
                ),
                fake_deployment(
                    "research-only",
                    unapproved.base_url,
                    license="cc-by-nc-4.0",
                    approved_for=["internal"],
                    region="us",
                ),
            ],
            "routes": [
                {"name": "auto", "candidates": ["licensed", "research-only"], "fallbacks": ["research-only"]},
                {"name": "nc-only", "candidates": ["research-only"]},
            ],
            "projects": [
                {"name": "lab"},
                {"name": "shop", "requires": {"approved_for": "commercial"}},
                {"name": "eu-shop", "requires": {"regions": ["eu"]}},
            ],
            "retries": {"max_attempts_per_deployment": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.01},
        }
    )


async def _key(client: httpx.AsyncClient, project: str) -> str:
    created = await client.post("/admin/keys", json={"project": project, "name": f"{project}-app"})
    assert created.status_code in (200, 201), created.text
    return created.json()["key"]


def _sdk(client: httpx.AsyncClient, key: str) -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
    http = httpx.AsyncClient(transport=transport, timeout=30)
    return openai.AsyncOpenAI(api_key=key, base_url="http://gateway/v1", http_client=http, max_retries=0)


async def test_a_commercial_project_never_falls_back_to_an_unapproved_deployment(
    tmp_path: Path, approved: FakeUpstream, unapproved: FakeUpstream
) -> None:
    async with app_client(_config(tmp_path, approved, unapproved)) as client:
        shop = _sdk(client, await _key(client, "shop"))
        with pytest.raises(openai.APIStatusError) as failed:
            await shop.chat.completions.create(model="auto", messages=ASK)
        assert failed.value.status_code >= 500
        with pytest.raises(openai.APIStatusError):  # a stream fails before its first chunk: an HTTP error
            await shop.chat.completions.create(model="auto", messages=ASK, stream=True)
        # the approved deployment was tried (and retried), the free unapproved fallback never
        assert len(approved.records) == 4
        assert unapproved.records == []
        # the same route, for a project without requirements, does fall back to it
        lab = _sdk(client, await _key(client, "lab"))
        answer = await lab.chat.completions.with_raw_response.create(model="auto", messages=ASK)
        assert answer.headers["x-switchyard-deployment"] == "research-only"
        assert len(unapproved.records) == 1


async def test_explain_says_why_the_unapproved_deployment_is_out(
    tmp_path: Path, approved: FakeUpstream, unapproved: FakeUpstream
) -> None:
    async with app_client(_config(tmp_path, approved, unapproved, approved_model="ok")) as client:
        key = await _key(client, "shop")
        headers = {"authorization": f"Bearer {key}"}
        report = (await client.post("/v1/route/explain", json={"model": "auto", "messages": ASK}, headers=headers)).json()
        assert report["project"] == "shop" and report["requires"] == {"approved_for": ["commercial"]}
        assert [c["deployment"] for c in report["candidates"]] == ["licensed"]
        assert report["excluded"] == [{"deployment": "research-only", "reason": NOT_COMMERCIAL}]
        # a project tag is a ledger label, not a way out of the key's project requirements
        tagged = {**headers, "x-switchyard-project-tag": "lab"}
        answer = await client.post("/v1/chat/completions", json={"model": "auto", "messages": ASK}, headers=tagged)
        assert answer.status_code == 200 and answer.headers["x-switchyard-deployment"] == "licensed"
        # pinned by name, the unapproved deployment is rerouted over its route (on_violation: reroute)
        pinned = await client.post("/v1/chat/completions", json={"model": "research-only", "messages": ASK}, headers=headers)
        assert pinned.status_code == 200, pinned.text
        assert (pinned.headers["x-switchyard-deployment"], pinned.headers["x-switchyard-rerouted"]) == ("licensed", "true")
        assert unapproved.records == []


async def test_no_approved_candidate_left_is_a_403_policy_violation_in_explain_and_the_real_call(
    tmp_path: Path, approved: FakeUpstream, unapproved: FakeUpstream
) -> None:
    async with app_client(_config(tmp_path, approved, unapproved)) as client:
        key = await _key(client, "shop")
        sdk = _sdk(client, key)
        for model in ("nc-only",):  # a route with nothing approved for the project
            dry = await client.post(
                "/v1/route/explain", json={"model": model, "messages": ASK}, headers={"authorization": f"Bearer {key}"}
            )
            with pytest.raises(openai.PermissionDeniedError) as refused:
                await sdk.chat.completions.create(model=model, messages=ASK)
            error = refused.value.body
            assert isinstance(error, dict) and error["code"] == "policy_violation", error
            assert NOT_COMMERCIAL in error["message"]
            assert refused.value.response.headers["x-should-retry"] == "false"
            explained = dry.json()
            assert explained["decision"] == "refused"
            assert (explained["error"]["status"], explained["error"]["code"]) == (403, "policy_violation")
        assert unapproved.records == [] and approved.records == []


async def test_a_region_requirement_keeps_a_project_in_its_region(
    tmp_path: Path, approved: FakeUpstream, unapproved: FakeUpstream
) -> None:
    async with app_client(_config(tmp_path, approved, unapproved, approved_model="ok")) as client:
        key = await _key(client, "eu-shop")
        headers = {"authorization": f"Bearer {key}"}
        report = (await client.post("/v1/route/explain", json={"model": "auto", "messages": ASK}, headers=headers)).json()
        assert report["excluded"] == [{"deployment": "research-only", "reason": "region us not in [eu]"}]
        answer = await _sdk(client, key).chat.completions.with_raw_response.create(model="auto", messages=ASK)
        assert answer.headers["x-switchyard-deployment"] == "licensed"
        assert unapproved.records == [] and len(approved.records) == 1


def test_check_lists_who_meets_each_projects_requirements_and_warns_when_nobody_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main as cli_main

    data = {
        "server": {"master_key": "sk-test"},
        "deployments": [
            fake_deployment("licensed", "http://127.0.0.1:1/v1", approved_for=["commercial"], region="eu-west-1"),
            fake_deployment("research-only", "http://127.0.0.1:1/v1", approved_for=["internal"], region="us"),
        ],
        "projects": [
            {"name": "shop", "requires": {"approved_for": "commercial", "regions": ["eu"]}},
            {"name": "paid-us", "requires": {"approved_for": "commercial", "regions": ["us"]}},
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli_main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "projects[0] shop requires approved_for commercial; regions eu: licensed" in out
    assert "projects[1] paid-us requires approved_for commercial; regions us: NO deployment" in out
    assert "warning: projects[1].requires: no enabled deployment meets it" in err

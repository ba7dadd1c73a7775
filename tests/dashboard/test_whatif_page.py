"""The What if page over HTTP (no browser): the form needs a finance or admin session and its CSRF
token, a result is the simulation's, and every bad input is a page in the dashboard's look (a 4xx
with the reason), never a JSON error or a 500."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.policies import as_candidate, running_config, without
from gateway.ledger.rollups import write_ledger
from tests.dashboard.test_dashboard_session import key, login
from tests.helpers import MASTER_KEY, app_client, make_config
from tests.reports.helpers import ledger_row

TODAY = datetime.now(UTC).date().isoformat()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    data = running_config(f"sqlite:///{tmp_path}/ledger.db", str(tmp_path / "spool"))
    config = make_config(
        {**data, "projects": [{"name": "web"}], "server": {"master_key": MASTER_KEY, "max_admin_body_bytes": 8192}}
    )
    async with app_client(config) as client:
        client.headers.pop("authorization")
        now = datetime.now(UTC)
        rows = [
            ledger_row(1, now, "web", "0.00036", deployment="gpt-4o-mini", locality="hosted", task="summarize"),
            ledger_row(2, now, "web", "0", deployment="llama-3.1-8b", endpoint="embeddings", task="embed"),
        ]
        await write_ledger(client.app.state.gateway.db, rows)  # type: ignore[attr-defined]
        yield client, data


def _form(page: str) -> str:
    """The what-if form's own CSRF token (the header's logout form has another)."""
    form = page[page.index('data-form="what-if"') :]
    return re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]


async def _post(client: httpx.AsyncClient, csrf: str, text: str = "", **fields: str) -> httpx.Response:
    data = {"csrf": csrf, "config_text": text, "since": TODAY, "until": TODAY, "project": "", **fields}
    return await client.post("/dashboard/what-if", data=data, files={"config_file": ("", b"", "application/octet-stream")})


async def test_a_finance_session_simulates_a_pasted_config(gw: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, data = gw
    secret, _ = await key(client, "finance")
    await login(client, secret)
    page = await client.get("/dashboard/what-if")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    answer = await _post(client, _form(page.text), yaml.safe_dump(without(data, "llama-3.1-8b")))
    assert answer.status_code == 200, answer.text
    assert 'data-total="current_cost_usd" data-value="0.00036"' in answer.text
    assert 'data-class="unservable"' in answer.text and "supports embeddings" in answer.text
    # the upload works too, and wins over the paste
    upload = await client.post(
        "/dashboard/what-if",
        data={"csrf": _form(page.text), "config_text": "not: [valid", "since": TODAY, "until": TODAY},
        files={"config_file": ("running.yaml", as_candidate(data).encode(), "application/yaml")},
    )
    assert upload.status_code == 200 and 'data-total="delta_usd" data-value="0"' in upload.text
    assert "running.yaml" in upload.text


async def test_bad_input_is_a_page_that_says_why(gw: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, data = gw
    secret, _ = await key(client, "finance")
    await login(client, secret)
    csrf = _form((await client.get("/dashboard/what-if")).text)
    broken = yaml.safe_dump({**data, "routes": [{**data["routes"][0], "objective": "fastest-ever"}]})
    for text, fields, status, says in (
        (broken, {}, 400, "routes[0].objective: Input should be"),
        ("", {}, 400, "Choose a YAML file or paste a config."),
        (as_candidate(data), {"since": "2026-02-30"}, 400, "is not a calendar date"),
        (as_candidate(data), {"project": "nope"}, 400, "is not a project"),
        ("x: " + "y" * 9000, {}, 413, "larger than this gateway accepts"),
    ):
        answer = await _post(client, csrf, text, **fields)
        assert answer.status_code == status and answer.headers["content-type"].startswith("text/html"), answer.text[:300]
        assert says in answer.text, (says, answer.text[-1500:])
    forged = await _post(client, "forged", as_candidate(data))
    assert forged.status_code == 400 and "The form expired" in forged.text
    other_site = await client.post(
        "/dashboard/what-if",
        data={"csrf": csrf, "config_text": as_candidate(data)},
        files={"config_file": ("", b"", "application/octet-stream")},
        headers={"origin": "https://evil.example"},
    )
    assert other_site.status_code == 400


async def test_app_keys_and_no_session_never_reach_the_page(gw: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, _ = gw
    assert (await client.get("/dashboard/what-if")).status_code == 303  # to the login form
    assert (await client.post("/dashboard/what-if", data={"x": "y"})).status_code == 303
    secret, _ = await key(client, "app")
    refused = await login(client, secret)
    assert refused.status_code == 403
    assert (await client.get("/dashboard/what-if")).status_code == 303

"""The dashboard's "What if" page in a real headless Chromium against ``switchyard serve`` on a
seeded ledger, and ``switchyard simulate`` against the same gateway.

A finance user uploads a candidate YAML and sees the result: the current column is the ledger's
(/admin/usage for the same range), the change is signed, the volume shift lists where requests
go; a pasted config that does not validate shows its key paths on the page (a 400 page, never a
500). The screenshot for docs/dashboard.md is written with SWITCHYARD_DOCS_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.async_api import Browser, async_playwright

from bench.policies import as_candidate, running_config, simple_tasks_home
from gateway.cli import main
from gateway.config import load_config
from gateway.db import Database
from gateway.ledger.seed import LedgerSeeder, seed_ledger
from tests.dashboard.test_dashboard_browser import CHROMIUM, LAPTOP, MASTER, PHONE, Offline, _context, _login, _shot
from tests.helpers import GatewayProcess, write_config

pytestmark = pytest.mark.slow
FOR_DOCS = os.environ.get("SWITCHYARD_DOCS_SCREENSHOTS") == "1"
ROWS = 100_000 if FOR_DOCS else 5_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    workdir = tmp_path_factory.mktemp("whatif")
    data = running_config(f"sqlite:///{workdir}/ledger.db")
    path = write_config(workdir, data)
    seeder = LedgerSeeder(load_config(path), rows=ROWS, days=45, projects=6, seed=13)

    async def seed() -> None:
        db = Database(f"sqlite:///{workdir}/ledger.db")
        await seed_ledger(db, seeder)
        await db.aclose()

    asyncio.run(seed())
    (workdir / "candidate.yaml").write_text(as_candidate(simple_tasks_home(data)))
    process = GatewayProcess(path, cwd=workdir).start(timeout=90)
    yield process, workdir
    process.stop()


@pytest.fixture(scope="module")
def finance(gateway: tuple[GatewayProcess, Path]) -> str:
    made = httpx.post(
        f"{gateway[0].base_url}/admin/keys",
        headers=MASTER,
        timeout=10,
        json={"project": "checkout", "name": "cfo", "role": "finance"},
    )
    return str(made.json()["key"])


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(**CHROMIUM)
        yield chromium
        await chromium.close()


async def test_what_if_page_in_chromium(gateway: tuple[GatewayProcess, Path], finance: str, browser: Browser) -> None:
    process, workdir = gateway
    base = process.base_url
    offline = Offline()
    today = datetime.now(UTC).date()
    since, until = (today - timedelta(days=29)).isoformat(), today.isoformat()
    context = await _context(browser, offline, LAPTOP)
    page = await context.new_page()
    await _login(page, base, finance)
    await page.wait_for_url(f"{base}/dashboard")

    # ---- from the overview to the page; upload the candidate for the last 30 days
    await page.click('a[data-link="what-if"]')
    await page.wait_for_url(f"{base}/dashboard/what-if**")
    await page.fill("#since", since)
    await page.fill("#until", until)
    await page.set_input_files("#config_file", str(workdir / "candidate.yaml"))
    await page.get_by_role("button", name="Simulate").click()
    await page.wait_for_selector("[data-result]")
    assert offline.escaped == []

    # the current column is the ledger's, to the last digit; the change is simulated minus current
    current = await page.get_attribute('[data-total="current_cost_usd"]', "data-value")
    simulated = await page.get_attribute('[data-total="simulated_cost_usd"]', "data-value")
    delta = await page.get_attribute('[data-total="delta_usd"]', "data-value")
    assert current and simulated and delta
    async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {finance}"}) as api:
        usage = (await api.get("/admin/usage", params={"since": since, "until": until})).json()
        assert current == usage["total_cost_usd"] and Decimal(current) > 0
        rows = await page.eval_on_selector_all(
            'table[data-table="simulation-projects"] tbody tr',
            "rs => rs.map(r => [r.dataset.project, r.querySelector('[data-col=current_cost_usd]').dataset.value])",
        )
        assert len(rows) == 6
        for project, spend in rows:
            per_project = (await api.get("/admin/usage", params={"project": project, "since": since, "until": until})).json()
            assert spend == per_project["total_cost_usd"], project
    assert Decimal(simulated) - Decimal(current) == Decimal(delta) < 0
    shown = await page.inner_text('[data-total="delta_usd"]')
    assert shown.startswith("\u2212$")  # signed, with a real minus
    shifts = await page.eval_on_selector_all("tr[data-shift]", "rs => rs.map(r => r.dataset.shift)")
    assert shifts and all(s.endswith(">llama-3.1-8b") for s in shifts)
    assert await page.inner_text("section[aria-labelledby=refused-h] .empty") == (
        "No request would become blocked or unservable."
    )
    await _shot(page, "what-if-laptop", docs="dashboard-what-if.png")

    # ---- a phone: no sideways page scroll
    await page.set_viewport_size(PHONE)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.set_viewport_size(LAPTOP)

    # ---- a pasted config that does not validate: the key paths, on the page
    broken = yaml.safe_load((workdir / "candidate.yaml").read_text())
    broken["routes"][0]["candidates"].append("gpt-5")
    await page.goto(f"{base}/dashboard/what-if")
    await page.fill("#config_text", yaml.safe_dump(broken))
    async with page.expect_response(f"{base}/dashboard/what-if") as info:
        await page.get_by_role("button", name="Simulate").click()
    assert (await info.value).status == 400
    message = await page.inner_text("[data-error] .alert")
    assert "routes[0].candidates[4]: unknown deployment 'gpt-5'" in message
    assert await page.input_value("#config_text")  # what was pasted is still there to fix
    await _shot(page, "what-if-invalid")
    await context.close()


def test_the_cli_asks_the_gateway(gateway: tuple[GatewayProcess, Path], finance: str, capsys: pytest.CaptureFixture[str]) -> None:
    process, workdir = gateway
    args = ["simulate", "--config", str(workdir / "candidate.yaml"), "--url", process.base_url, "--api-key", finance]
    today = datetime.now(UTC).date()
    window = ["--since", (today - timedelta(days=44)).isoformat(), "--until", today.isoformat()]
    assert main([*args, *window, "--format", "json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert report["rows"] == ROWS and Decimal(report["totals"]["delta_usd"]) < 0
    assert main([*args, *window]) == 0
    table = capsys.readouterr().out
    assert "Cost per project" in table and "Volume shift" in table
    total = next(line for line in table.splitlines() if line.startswith("TOTAL"))
    assert " -$" in total  # the delta, signed
    assert main([*args, *window, "--format", "csv", "--table", "shifts"]) == 0
    assert capsys.readouterr().out.startswith("project,from,to,requests")
    # without a gateway: the running config's own database
    assert main([*args[:3], "--current", str(workdir / "config.yaml"), *window, "--format", "json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert direct["totals"] == report["totals"]

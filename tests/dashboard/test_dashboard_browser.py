"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
``switchyard serve`` on 127.0.0.1 with a seeded ledger.

It shows: a finance login works; every overview row's ``data-spend-usd`` equals /admin/usage's
``total_cost_usd`` for the same filters; the chart is drawn with data points that add up to the
total; the CSV downloads equal their tables; an app key is refused; logout (and revoking the
key) ends the session; the pages are usable by keyboard, labelled, and readable on a laptop and
a phone; and no request ever leaves 127.0.0.1. Screenshots go to tests/artifacts/dashboard/
(with SWITCHYARD_DOCS_SCREENSHOTS=1 the two for docs/dashboard.md are written into docs/images/).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from gateway.config import load_config
from gateway.db import Database
from gateway.ledger.seed import LedgerSeeder, seed_ledger
from tests.helpers import MASTER_KEY, ROOT, GatewayProcess, write_config

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
DOCS_IMAGES = ROOT / "docs" / "images"
FOR_DOCS = os.environ.get("SWITCHYARD_DOCS_SCREENSHOTS") == "1"
CHROMIUM = {"executable_path": "/usr/bin/chromium", "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
MASTER = {"authorization": f"Bearer {MASTER_KEY}"}

DEMO = {
    "ledger": {"spool_dir": "./spool"},
    "deployments": [
        {
            "name": "llama-3.1-8b",
            "provider": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "llama",
            "locality": "self_hosted",
            "pricing": {"gpu_hour_usd": 2.5, "tokens_per_second": 2500},
        },
        {
            "name": "qwen-coder-32b",
            "provider": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "qwen",
            "locality": "self_hosted",
            "pricing": {"gpu_hour_usd": 4.0, "tokens_per_second": 1500},
        },
        {
            "name": "gpt-4o-mini",
            "provider": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "gpt-4o-mini",
            "locality": "hosted",
            "pricing": {"input_per_mtok": 0.15, "cached_input_per_mtok": 0.075, "output_per_mtok": 0.6},
        },
        {
            "name": "claude-sonnet",
            "provider": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "claude-sonnet",
            "locality": "hosted",
            "pricing": {"input_per_mtok": 3, "cached_input_per_mtok": 0.3, "output_per_mtok": 15},
        },
    ],
    "routes": [{"name": "auto", "candidates": ["llama-3.1-8b", "qwen-coder-32b", "gpt-4o-mini", "claude-sonnet"]}],
    "projects": [],
    "reporting": {"reference_model": "gpt-4o"},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("dashboard")
    path = write_config(workdir, {**DEMO, "database_url": f"sqlite:///{workdir}/ledger.db"})
    seeder = LedgerSeeder(load_config(path), rows=120_000 if FOR_DOCS else 6_000, days=45, projects=8, seed=11)

    async def seed() -> None:
        db = Database(f"sqlite:///{workdir}/ledger.db")
        await seed_ledger(db, seeder)
        await db.aclose()

    asyncio.run(seed())
    process = GatewayProcess(path, cwd=workdir).start(timeout=90)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keys(gateway: GatewayProcess) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role in ("finance", "app"):
        made = httpx.post(
            f"{gateway.base_url}/admin/keys",
            headers=MASTER,
            timeout=10,
            json={"project": "checkout", "name": f"{role}-team", "role": role},
        ).json()
        out[role], out[f"{role}_id"] = made["key"], made["id"]
    return out


class Offline:
    """Every request the browser makes goes through here: 127.0.0.1 passes, anything else is aborted and kept."""

    def __init__(self) -> None:
        self.local: list[str] = []
        self.escaped: list[str] = []

    async def __call__(self, route: Route) -> None:
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1":
            self.local.append(url)
            await route.continue_()
        else:
            self.escaped.append(url)
            await route.abort()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(**CHROMIUM)
        yield chromium
        await chromium.close()


async def _context(browser: Browser, offline: Offline, viewport: dict[str, int]) -> BrowserContext:
    context = await browser.new_context(viewport=viewport, accept_downloads=True, service_workers="block")
    await context.route("**/*", offline)
    return context


async def _login(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/dashboard")
    assert "/dashboard/login" in page.url
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()


async def _shot(page: Page, name: str, *, docs: str | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if FOR_DOCS and docs:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        height = min(1500, await page.evaluate("document.documentElement.scrollHeight"))
        await page.screenshot(
            path=str(DOCS_IMAGES / docs), full_page=True, clip={"x": 0, "y": 0, "width": LAPTOP["width"], "height": height}
        )


async def _download_csv(page: Page, selector: str) -> list[dict[str, str]]:
    async with page.expect_download() as info:
        await page.click(selector)
    download = await info.value
    path = await download.path()
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


async def _table(page: Page, table: str) -> list[dict[str, str]]:
    """A table's exact values, from the cells' data-value attributes."""
    return await page.eval_on_selector_all(
        f'table[data-table="{table}"] tbody tr',
        """rows => rows.map(tr => Object.fromEntries(
             [...tr.querySelectorAll('[data-col]')].map(c => [c.dataset.col, c.dataset.value])))""",
    )


CONTRAST = """
els => els.map(el => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = c => { const v = c.map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
                     return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  let bg = el, color = getComputedStyle(bg).backgroundColor;
  while ((color === 'rgba(0, 0, 0, 0)' || color === 'transparent') && bg.parentElement) {
    bg = bg.parentElement; color = getComputedStyle(bg).backgroundColor; }
  const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(color));
  return [el.textContent.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
})"""


async def test_the_finance_dashboard_in_chromium(gateway: GatewayProcess, keys: dict[str, Any], browser: Browser) -> None:
    base = gateway.base_url
    offline = Offline()
    today = datetime.now(UTC).date()
    since, until = (today - timedelta(days=29)).isoformat(), today.isoformat()

    # ---- an app key is refused, visibly, and gets no cookie
    context = await _context(browser, offline, LAPTOP)
    page = await context.new_page()
    await _login(page, base, keys["app"])
    assert "/dashboard/login" in page.url
    assert "app key" in (await page.locator("[data-login-error]").inner_text())
    assert not [c for c in await context.cookies() if c["name"] == "switchyard_session"]
    await _shot(page, "login-refused")

    # ---- a finance login works; the overview's numbers are /admin/usage's
    await _login(page, base, keys["finance"])
    await page.wait_for_url(f"{base}/dashboard")
    cookie = next(c for c in await context.cookies() if c["name"] == "switchyard_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and keys["finance"] not in cookie["value"]
    await _shot(page, "overview-laptop", docs="dashboard-overview.png")  # this month, the default
    await page.goto(f"{base}/dashboard?since={since}&until={until}")
    rows = await page.eval_on_selector_all("tr[data-project]", "rs => rs.map(r => [r.dataset.project, r.dataset.spendUsd])")
    assert len(rows) == 8
    finance = {"authorization": f"Bearer {keys['finance']}"}
    async with httpx.AsyncClient(base_url=base, headers=finance) as api:
        for project, spend in rows:
            usage = (await api.get("/admin/usage", params={"project": project, "since": since, "until": until})).json()
            assert spend == usage["total_cost_usd"], project
        everything = (await api.get("/admin/usage", params={"since": since, "until": until})).json()
    total = await page.get_attribute("[data-total-spend-usd]", "data-total-spend-usd")
    assert total == everything["total_cost_usd"] and Decimal(total) > 0

    # ---- the chart is drawn, with data points that add up to the total
    points = await page.eval_on_selector_all(
        '[data-chart="spend-by-day"] svg rect[data-spend-usd]',
        "rs => rs.map(r => [r.dataset.day, r.dataset.spendUsd, r.getBBox().height])",
    )
    assert len(points) >= 30 and all(height > 0 for _, _, height in points)
    assert sum(Decimal(spend) for _, spend, _ in points) == Decimal(total)
    assert {day for day, _, _ in points} <= {(today - timedelta(days=i)).isoformat() for i in range(30)}

    # ---- the CSV download is the table
    table = await _table(page, "projects")
    downloaded = await _download_csv(page, 'a[data-download="projects-csv"]')
    assert [r["project"] for r in downloaded] == [p for p, _ in rows]
    for line, cells in zip(downloaded, table, strict=True):
        assert all(line[column] == value for column, value in cells.items()), (line, cells)
    assert [r["spend_usd"] for r in downloaded] == [s for _, s in rows]

    # ---- keyboard and labels: the skip link comes first, every control has a name, text has contrast
    await page.reload()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")  # the skip link moves focus to the content
    assert await page.evaluate("document.activeElement.id") == "main"
    assert await page.get_by_label("From").count() == 1 and await page.get_by_label("To (included)").count() == 1
    unnamed = await page.eval_on_selector_all(
        "input:not([type=hidden]), button, a",
        "els => els.filter(e => !(e.labels?.length || e.textContent.trim() || e.getAttribute('aria-label'))).length",
    )
    assert unnamed == 0
    ratios = await page.eval_on_selector_all("h1, .range, td, th, .sub, .muted, a, .kpi h2, label, .foot p", CONTRAST)
    assert min(r for _, r in ratios) >= 4.5, sorted(ratios, key=lambda r: r[1])[:3]

    # ---- a project page: chart by deployment, switchable; every table downloads as itself
    first = rows[0][0]
    await page.click(f'tr[data-project="{first}"] th a')
    await page.wait_for_url(f"**/dashboard/projects/{first}?*")
    assert await page.locator('[data-chart="project-spend-by-day"] svg rect[data-spend-usd]').count() > 0
    await page.get_by_role("link", name="Model", exact=True).click()
    await page.wait_for_url("**by=model")
    assert "by model" in await page.locator("#chart-h").inner_text()
    for breakdown in ("model", "deployment", "key", "task", "sensitivity"):
        table = await _table(page, breakdown)
        downloaded = await _download_csv(page, f'a[data-download="{breakdown}-csv"]')
        assert [r["label"] for r in downloaded][: len(table)] == [c["label"] for c in table]
        for line, cells in zip(downloaded, table, strict=False):
            assert all(line[column] == value for column, value in cells.items()), (breakdown, line, cells)
    await page.goto(f"{base}/dashboard/projects/checkout")
    await _shot(page, "project-laptop", docs="dashboard-project.png")

    # ---- a phone: no sideways page scroll, the chart fits, the tables scroll in place
    phone = await context.new_page()
    await phone.set_viewport_size(PHONE)
    for path, name in (
        (f"/dashboard?since={since}&until={until}", "overview-phone"),
        ("/dashboard/projects/checkout", "project-phone"),
    ):
        await phone.goto(base + path)
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        chart_width = await phone.eval_on_selector("svg.chart", "svg => svg.getBoundingClientRect().width")
        assert chart_width <= PHONE["width"]
        await _shot(phone, name)

    # ---- logout ends the session, even for a kept copy of the cookie; so does revoking the key
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/dashboard/login?logged_out=1")
    assert "logged out" in (await page.content())
    await context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path", "httpOnly", "sameSite")}])
    await page.goto(f"{base}/dashboard")
    assert "/dashboard/login" in page.url
    await _login(page, base, keys["finance"])
    await page.wait_for_url(f"{base}/dashboard")
    async with httpx.AsyncClient(base_url=base, headers=MASTER) as admin:
        await admin.post(f"/admin/keys/{keys['finance_id']}/revoke")
    await page.reload()
    assert "/dashboard/login" in page.url
    await context.close()

    # ---- nothing left 127.0.0.1; the stylesheet and icon came from the gateway
    assert offline.escaped == []
    assert any(u.endswith(".css") or ".css?" in u for u in offline.local) and any("favicon.svg" in u for u in offline.local)

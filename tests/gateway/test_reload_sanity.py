"""Reload sanity: a half-written, truncated or weakening config never takes effect by accident."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import yaml

from gateway.cli import main as cli_main
from gateway.config import DEV_MASTER_KEY
from gateway.reload import ConfigWatcher
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _data(upstream: FakeUpstream, tmp_path: Path, **extra: object) -> dict:
    data = {
        "server": {"master_key": MASTER_KEY, "reload_debounce_s": 0.05},
        "database_url": f"sqlite:///{tmp_path}/ledger.db",
        "ledger": {"spool_dir": str(tmp_path / "spool")},
        "deployments": [fake_deployment("alpha", upstream.base_url), fake_deployment("beta", upstream.base_url)],
        "routes": [{"name": "auto", "candidates": ["alpha", "beta"]}, {"name": "spare", "candidates": ["beta"]}],
    }
    data.update(extra)
    return data


def _write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data))


async def _watcher(client, path: Path) -> ConfigWatcher:
    return ConfigWatcher(client.app.state.gateway, path, interval_s=3600)


async def test_a_truncated_config_that_drops_a_route_in_use_is_refused(upstream: FakeUpstream, tmp_path: Path, caplog) -> None:
    path = tmp_path / "config.yaml"
    data = _data(upstream, tmp_path)
    _write(path, data)
    async with app_client(make_config(data)) as client:
        watcher = await _watcher(client, path)
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # "auto" is in use
        text = path.read_text()
        path.write_text(text[: text.index("routes:")])  # cut off before routes:, as the review did
        with caplog.at_level(logging.ERROR, logger="switchyard.reload"):
            assert await watcher.check() is False
        assert "'auto'" in caplog.text and "retired_models" in caplog.text
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # the old policy stands
        # "spare" was never asked for: removing it alone is fine
        _write(path, {**data, "routes": [data["routes"][0]]})
        assert await watcher.check() is True
        # and removing a used route on purpose works when the file says so
        _write(path, {**data, "routes": [{"name": "other", "candidates": ["alpha"]}], "retired_models": ["auto"]})
        assert await watcher.check() is True
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 404


async def test_removing_the_master_key_never_falls_back_to_the_development_key(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = _data(upstream, tmp_path)
    _write(path, data)
    async with app_client(make_config(data)) as client:
        watcher = await _watcher(client, path)
        _write(path, {**data, "server": {"reload_debounce_s": 0.05}})  # master_key removed
        assert await watcher.check() is False
        dev = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {DEV_MASTER_KEY}"})
        assert dev.status_code == 401
        _write(path, {**data, "server": {"reload_debounce_s": 0.05, "allow_dev_master_key": True}})
        assert await watcher.check() is True  # said on purpose


async def test_a_file_still_being_written_is_applied_only_once_it_holds_still(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    data = _data(upstream, tmp_path)
    _write(path, data)
    async with app_client(make_config(data)) as client:
        watcher = await _watcher(client, path)
        final = {**data, "routes": [*data["routes"], {"name": "late", "candidates": ["alpha"]}]}
        text = yaml.safe_dump(final)

        async def write_slowly() -> None:
            for end in range(len(text) // 4, len(text) + 1, max(1, len(text) // 4)):
                path.write_text(text[:end])
                await asyncio.sleep(0.02)
            path.write_text(text)

        writer = asyncio.create_task(write_slowly())
        await asyncio.sleep(0.01)
        applied = await watcher.check()
        await writer
        if not applied:  # it saw the file still changing and gave up this round; the next poll applies it
            applied = await watcher.check()
        assert applied
        assert "late" in client.app.state.gateway.runtime.router.routes
        assert watcher.rejected == 0  # no half-written version was ever judged


async def test_every_applied_change_is_logged_as_a_diff(upstream: FakeUpstream, tmp_path: Path, caplog) -> None:
    path = tmp_path / "config.yaml"
    data = _data(upstream, tmp_path)
    _write(path, data)
    async with app_client(make_config(data)) as client:
        watcher = await _watcher(client, path)
        changed = {**data, "deployments": [{**data["deployments"][0], "quality": 5}, data["deployments"][1]]}
        changed["routes"] = [*data["routes"], {"name": "new-route", "candidates": ["alpha"]}]
        _write(path, changed)
        with caplog.at_level(logging.INFO, logger="switchyard.reload"):
            assert await watcher.check() is True
    assert "deployment alpha changed: quality" in caplog.text
    assert "route added: new-route" in caplog.text


def test_serve_refuses_the_development_key_on_a_public_interface(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path}/l.db",
                "deployments": [fake_deployment("a", "http://127.0.0.1:9/v1")],
            }
        )
    )
    assert cli_main(["serve", "--config", str(path), "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "development master key" in capsys.readouterr().err

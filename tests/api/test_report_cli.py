"""``switchyard report``, ``keys create --role`` and ``dev seed-ledger`` against a real gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from gateway.cli import main
from gateway.db import Database
from tests.helpers import MASTER_KEY, free_port, write_config
from tests.reports.helpers import assert_rollups_equal_rows


class Gateway:
    """The whole app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, config_path: Path) -> None:
        from gateway.app import create_app

        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(config_path=config_path, watch=False), host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "gateway did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def test_seed_then_report_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(
        tmp_path,
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [
                {
                    "name": "local",
                    "provider": "openai_compatible",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "locality": "self_hosted",
                    "pricing": {"gpu_hour_usd": 2, "tokens_per_second": 1000},
                },
                {
                    "name": "cloud",
                    "provider": "openai_compatible",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "locality": "hosted",
                    "pricing": {"input_per_mtok": 1, "output_per_mtok": 4},
                },
            ],
            "routes": [{"name": "auto", "candidates": ["local", "cloud"]}],
            "projects": [],
            "reporting": {"reference_model": "cloud"},
        },
    )
    assert (
        main(["dev", "seed-ledger", "--config", str(config), "--rows", "3000", "--days", "20", "--projects", "4", "--quiet"]) == 0
    )
    assert "wrote 3,000 ledger rows" in capsys.readouterr().out

    async def check_seeded() -> None:
        db = Database(f"sqlite:///{tmp_path}/ledger.db")
        await assert_rollups_equal_rows(db)
        await db.aclose()

    asyncio.run(check_seeded())

    assert main(["report", "--config", str(config), "--format", "json"]) == 0
    direct = orjson.loads(capsys.readouterr().out)
    assert len(direct["projects"]) == 4 and Decimal(direct["totals"]["spend_usd"]) > 0
    assert main(["report", "--config", str(config), "--since", "2026-02-30"]) == 2
    assert "since: '2026-02-30' is not a calendar date" in capsys.readouterr().err

    monkeypatch.setenv("SWITCHYARD_MASTER_KEY", MASTER_KEY)
    with Gateway(config) as gateway:
        url = ("--url", gateway.url)
        assert (
            main(
                [
                    "keys",
                    "create",
                    "--project",
                    "checkout",
                    "--name",
                    "month-end",
                    "--role",
                    "finance",
                    "--projects",
                    "checkout,search",
                    *url,
                ]
            )
            == 0
        )
        finance = orjson.loads(capsys.readouterr().out)
        assert (finance["role"], finance["projects"]) == ("finance", ["checkout", "search"])
        monkeypatch.delenv("SWITCHYARD_MASTER_KEY")
        monkeypatch.setenv("SWITCHYARD_API_KEY", finance["key"])

        assert main(["report", "--format", "csv", *url]) == 0
        printed = capsys.readouterr().out
        served = httpx.get(
            f"{gateway.url}/admin/reports/projects",
            params={"format": "csv"},
            headers={"authorization": f"Bearer {finance['key']}"},
        ).text
        assert printed == served
        assert [r["project"] for r in csv.DictReader(io.StringIO(printed))] == ["checkout", "search"]

        assert main(["report", "--format", "table", *url]) == 0
        table = capsys.readouterr().out
        assert table.startswith("Spend per project, ") and "TOTAL" in table and "checkout" in table and "analytics" not in table
        by_project = {p["project"]: p for p in direct["projects"]}
        assert by_project["checkout"]["spend_usd"] in table  # exact amounts, as in the JSON

        assert main(["report", "--since", "2026-11-10", "--until", "2026-11-01", *url]) == 1
        assert "400: since (2026-11-10) is after until (2026-11-01)" in capsys.readouterr().err
        assert main(["keys", "create", "--project", "checkout", "--name", "x", *url]) == 1  # finance keys cannot write
        assert "403" in capsys.readouterr().err

"""``switchyard simulate``: what would a candidate config have cost over the ledger?

switchyard simulate --config NEW.yaml [--since 2026-11-01] [--until 2026-11-30] [--project P]
                    [--format table|csv|json] [--table projects|deployments|shifts|classes]
    sends NEW.yaml to a running gateway (POST /admin/simulate, a finance or admin key), which
    replays its ledger through it against the config it runs; or, with --current RUNNING.yaml,
    reads RUNNING.yaml's database directly and replays against RUNNING.yaml (no gateway needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMATS = ("table", "csv", "json")
SIMULATION_TIMEOUT_S = 300.0


def render(report: dict[str, Any], fmt: str, table: str = "projects") -> str:
    from gateway.simulation import simulation_csv, simulation_table

    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return simulation_csv(report, table)
    return simulation_table(report)


async def simulate_from_database(
    current_path: str, text: str, source: str, since: str | None, until: str | None, project: str | None
) -> dict[str, Any]:
    """The simulation without a gateway: ``current_path``'s database, replayed against it."""
    from gateway.config import load_config
    from gateway.db.engine import Database
    from gateway.reports import parse_range
    from gateway.simulation import parse_candidate, simulate_ledger

    running = load_config(current_path)
    candidate = parse_candidate(text, source)
    days = parse_range(since, until, datetime.now(UTC).date())
    db = Database(running.database_url)
    try:
        await db.migrate()
        return await simulate_ledger(db, running, candidate, days, project=project, source=source)
    finally:
        await db.aclose()


def cmd_simulate(args: argparse.Namespace) -> int:
    from core.errors import GatewayError
    from gateway.cli_admin import AdminError, _client
    from gateway.config import ConfigError

    try:
        text = Path(args.config).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: {args.config}: cannot read: {exc}", file=sys.stderr)
        return 2
    try:
        if args.current:
            report = asyncio.run(simulate_from_database(args.current, text, args.config, args.since, args.until, args.project))
        else:
            client = _client(args)
            client.timeout_s = SIMULATION_TIMEOUT_S
            body = {"config": text, "since": args.since, "until": args.until, "project": args.project}
            report = client.request("POST", "/admin/simulate", body={k: v for k, v in body.items() if v is not None})
            report["candidate"] = args.config
    except (AdminError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(render(report, args.format, args.table))
    return 0


def add_simulate_command(subparsers: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``simulate`` to the ``switchyard`` parser."""
    from gateway.simulation import TABLES

    sim = subparsers.add_parser(
        "simulate", help="replay the ledger through a candidate config: cost delta, self-hosted share, refused requests"
    )
    sim.add_argument("--config", required=True, help="the candidate config (YAML); no secrets needed")
    sim.add_argument("--since", help="first day, YYYY-MM-DD (default: the first of this month)")
    sim.add_argument("--until", help="last day, included, YYYY-MM-DD (default: the end of this month)")
    sim.add_argument("--project", help="only this project")
    sim.add_argument("--format", choices=FORMATS, default="table")
    sim.add_argument("--table", choices=TABLES, default="projects", help="which table --format csv writes")
    sim.add_argument("--current", help="the running config: read its database directly instead of asking a gateway")
    common(sim)
    sim.set_defaults(func=cmd_simulate)

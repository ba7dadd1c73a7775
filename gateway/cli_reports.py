"""``switchyard report`` (the per-project finance report) and ``switchyard dev seed-ledger``.

switchyard report [--since 2026-11-01] [--until 2026-11-30] [--format table|csv|json]
    asks a running gateway (GET /admin/reports/projects) with a finance or admin key, or,
    with --config FILE, reads that config's database directly (no gateway needed).
switchyard dev seed-ledger --config FILE --rows N --days D --projects P [--seed S]
    writes a realistic ledger and its rollups into the config's database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

FORMATS = ("table", "csv", "json")


def render(report: dict[str, Any], fmt: str) -> str:
    from gateway.reports.render import projects_csv, projects_table

    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return projects_csv(report)
    return projects_table(report)


async def _report_from_database(config_path: str, since: str | None, until: str | None) -> dict[str, Any]:
    from gateway.config import load_config
    from gateway.db.engine import Database
    from gateway.reports import parse_range, projects_report

    config = load_config(config_path)
    days = parse_range(since, until, datetime.now(UTC).date())
    db = Database(config.database_url)
    try:
        await db.migrate()
        return await projects_report(db, config, days)
    finally:
        await db.aclose()


def cmd_report(args: argparse.Namespace) -> int:
    from core.errors import GatewayError
    from gateway.cli_admin import AdminError, _client
    from gateway.config import ConfigError

    try:
        if args.config:
            report = asyncio.run(_report_from_database(args.config, args.since, args.until))
        else:
            report = _client(args).request("GET", "/admin/reports/projects", query={"since": args.since, "until": args.until})
    except (AdminError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(render(report, args.format))
    return 0


def cmd_seed_ledger(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.db.engine import Database
    from gateway.ledger.seed import LedgerSeeder, seed_ledger

    try:
        config = load_config(args.config)
        seeder = LedgerSeeder(config, rows=args.rows, days=args.days, projects=args.projects, seed=args.seed)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(done: int) -> None:
        if not args.quiet:
            print(f"\r  {done:,} / {args.rows:,} rows", end="", file=sys.stderr, flush=True)

    async def run() -> Any:
        db = Database(config.database_url)
        try:
            return await seed_ledger(db, seeder, progress=progress)
        finally:
            await db.aclose()

    result = asyncio.run(run())
    if not args.quiet:
        print(file=sys.stderr)
    print(
        f"wrote {result.rows:,} ledger rows ({result.rollup_rows:,} rollup upserts) for {result.projects} projects "
        f"and {result.keys} keys in {result.seconds:.1f} s"
    )
    return 0


def add_report_commands(subparsers: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``report`` and ``dev seed-ledger`` to the ``switchyard`` parser."""
    report = subparsers.add_parser("report", help="spend per project: budget use, forecast, self-hosted share, savings")
    report.add_argument("--since", help="first day, YYYY-MM-DD (default: the first of this month)")
    report.add_argument("--until", help="last day, included, YYYY-MM-DD (default: the end of this month)")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--config", help="read this config's database directly instead of asking a gateway")
    common(report)
    report.set_defaults(func=cmd_report)

    dev = subparsers.add_parser("dev", help="developer tools")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    seed = dev_sub.add_parser("seed-ledger", help="write a realistic ledger (rows and rollups) into the config's database")
    seed.add_argument("--config", required=True)
    seed.add_argument("--rows", type=int, default=100_000)
    seed.add_argument("--days", type=int, default=60)
    seed.add_argument("--projects", type=int, default=8)
    seed.add_argument("--seed", type=int, default=7, help="random seed (the same seed writes the same ledger)")
    seed.add_argument("--quiet", action="store_true")
    seed.set_defaults(func=cmd_seed_ledger)

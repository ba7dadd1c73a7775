"""``python -m bench.simulation``: policy simulation on a seeded 100,000-row ledger, SQLite and PostgreSQL.

For each database: seed the ledger (``gateway.ledger.seed``, 60 days, 8 projects; not timed
against the target), then run the simulation the API and the CLI run (:func:`simulate_ledger`:
read the rows, replay them through the candidate against the running config) for three
candidates -- the running config itself, one that moves simple tasks to self-hosted, one without
a deployment -- ``--repeat`` times each, timed end to end (wall clock and CPU). It checks on the
way what the acceptance asks: the current column equals the ledger's totals (``usage_report``)
to the last digit, and the unchanged config yields a zero delta for every project. Target (issue
16): under 10 s on 100,000 rows.

The figures go to docs/simulation.md, between ``<!-- simulation-bench:start -->`` and
``<!-- simulation-bench:end -->``.

    python -m bench.simulation                          # 100,000 rows, both databases (about a minute)
    python -m bench.simulation --rows 20000 --backends sqlite --no-write    # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.machine import cpu_model, git_revision, os_name
from bench.policies import as_candidate, running_config, simple_tasks_home, without
from bench.reports import scratch_postgres
from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "simulation.md"
SECTION = "simulation-bench"
TARGET_S = 10.0


@dataclass
class Case:
    """One candidate on one database: its timings and what it found."""

    name: str
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    load_s: list[float] = field(default_factory=list)
    replay_s: list[float] = field(default_factory=list)
    delta_usd: str = ""
    moved: int = 0
    refused: int = 0


@dataclass
class Run:
    backend: str
    rows: int
    seed_s: float = 0.0
    current_usd: str = ""
    ledger_usd: str = ""
    zero_delta_projects: str = ""
    cases: list[Case] = field(default_factory=list)


def candidates(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("the running config, unchanged", as_candidate(data)),
        ("simple tasks moved to self-hosted", yaml.safe_dump(simple_tasks_home(data))),
        ("without llama-3.1-8b", yaml.safe_dump(without(data, "llama-3.1-8b"))),
    ]


async def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> Run:
    from gateway.config import parse_config
    from gateway.db.engine import Database
    from gateway.ledger.seed import LedgerSeeder, seed_ledger
    from gateway.ledger.usage import usage_report
    from gateway.reports.dates import DayRange
    from gateway.simulation import parse_candidate, simulate_ledger

    run = Run(backend, args.rows)
    async with AsyncExitStack() as stack:
        url = (
            await stack.enter_async_context(scratch_postgres(args.postgres))
            if backend == "postgres"
            else f"sqlite:///{workdir}/ledger.db"
        )
        data = running_config(url, str(workdir / "spool"))
        running = parse_config(yaml.safe_dump({"server": {"master_key": "sk-bench-simulation"}, **data}))
        db = Database(url)
        stack.push_async_callback(db.aclose)
        now = datetime.now(UTC)
        started = time.perf_counter()
        await seed_ledger(db, LedgerSeeder(running, rows=args.rows, days=60, projects=8, seed=7, now=now))
        run.seed_s = time.perf_counter() - started
        days = DayRange((now - timedelta(days=60)).date(), now.date())
        usage = await usage_report(db, since=days.since, until=days.until)
        run.ledger_usd = usage["total_cost_usd"]
        for name, text in candidates(data):
            case = Case(name)
            candidate = parse_candidate(text, name)
            for _ in range(args.repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                report = await simulate_ledger(db, running, candidate, days, source=name)
                case.wall_s.append(time.perf_counter() - wall)
                case.cpu_s.append(time.process_time() - cpu)
                case.load_s.append(report["timing"]["load_s"])
                case.replay_s.append(report["timing"]["replay_s"])
            totals = report["totals"]
            assert report["rows"] == args.rows, report["rows"]
            case.delta_usd, case.moved = totals["delta_usd"], totals["moved_requests"]
            case.refused = totals["blocked_requests"] + totals["unservable_requests"]
            run.current_usd = totals["current_cost_usd"]
            if run.current_usd != run.ledger_usd:
                raise SystemExit(f"{backend}: current {run.current_usd} != ledger {run.ledger_usd}")
            if not run.cases:  # the unchanged config
                zero = [p["project"] for p in report["projects"] if p["delta_usd"] == "0" and not p["moved_requests"]]
                if len(zero) != len(report["projects"]):
                    raise SystemExit(f"{backend}: the unchanged config moved something: {report['projects']}")
                run.zero_delta_projects = f"{len(zero)} of {len(report['projects'])}"
            run.cases.append(case)
            print(f"  {backend}: {name}: median {statistics.median(case.wall_s):.2f} s", file=sys.stderr)
    return run


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    names = [c.name for c in runs[0].cases]
    head = "| | " + " | ".join(r.backend.replace("sqlite", "SQLite").replace("postgres", "PostgreSQL") for r in runs) + " |"
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {cpu_model()} ({os.cpu_count()} cores, {os_name()}), "
        f"revision {git_revision(ROOT)}, load average {args.load:.1f} at the start (other jobs on the machine), "
        f"with `python -m bench.simulation --rows {args.rows} --repeat {args.repeat}`: "
        f"a {args.rows:,}-row ledger (60 days, 8 projects) replayed against the running config, end to end "
        "(reading the rows, compiling both configs, replaying, building the report). Target: under "
        f"{TARGET_S:.0f} s. Median of {args.repeat} runs; worst in brackets. CPU is the process's CPU time: "
        "on a busy machine the wall clock is mostly waiting for a core.",
        "",
        head,
        "|---" * (len(runs) + 1) + "|",
    ]
    for i, name in enumerate(names):
        cells = []
        for r in runs:
            c = r.cases[i]
            ok = "✅" if max(c.wall_s) < TARGET_S else "❌"
            cells.append(
                f"{statistics.median(c.wall_s):.2f} s ({max(c.wall_s):.2f}) {ok}<br>read {statistics.median(c.load_s):.2f} s, "
                f"replay {statistics.median(c.replay_s):.2f} s, CPU {statistics.median(c.cpu_s):.2f} s"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for label, values in (
        ("delta (unchanged / home / without)", [" / ".join(c.delta_usd for c in r.cases) for r in runs]),
        ("requests moved (home)", [f"{r.cases[1].moved:,}" for r in runs]),
        ("requests refused (without)", [f"{r.cases[2].refused:,}" for r in runs]),
        ("current column = ledger total", [f"{r.current_usd} = {r.ledger_usd} ✅" for r in runs]),
        ("projects with a zero delta, unchanged config", [r.zero_delta_projects for r in runs]),
        ("seeding the ledger (not part of the target)", [f"{r.seed_s:.1f} s" for r in runs]),
    ):
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="switchyard-sim-") as tmp:
        for backend in args.backends.split(","):
            workdir = Path(tmp) / backend
            workdir.mkdir()
            runs.append(await bench_backend(backend, args, workdir))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres", default=os.environ.get("SWITCHYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing docs/simulation.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args.load = os.getloadavg()[0]
    runs = asyncio.run(main_async(args))
    body = markdown(runs, args)
    if args.no_write:
        print(body)
    else:
        write_section(DOC, SECTION, body)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

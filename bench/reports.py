"""``python -m bench.reports``: the finance reports and dashboard at a 1,000,000-row ledger.

For SQLite and for PostgreSQL: seed the ledger with ``switchyard dev seed-ledger`` (a child
process, timed: wall clock and CPU), start ``switchyard serve`` on it, log a finance key into the
dashboard, then call every report API route and open every dashboard page (and its CSV
downloads) ``--repeat`` times each, one at a time, after one warm-up call. Each call is timed
end to end over HTTP on 127.0.0.1. Targets (issue 10): seeding 1M rows on SQLite in at most
2 minutes; every call under 300 ms.

The figures go to docs/benchmarks.md, between ``<!-- reports-bench:start -->`` and
``<!-- reports-bench:end -->`` (the rest of the file is left as it is), and the raw timings to
bench/results/reports.json.

    python -m bench.reports                      # 1,000,000 rows, both databases (a few minutes)
    python -m bench.reports --rows 50000 --backends sqlite --no-write    # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.machine import cpu_model, git_revision, os_name
from bench.procs import Service, free_port, http_ok
from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "reports-bench"
MASTER = "sk-bench-reports-master"
TARGET_MS = 300.0
SEED_TARGET_S = 120.0
PROJECT = "checkout"  # the biggest seeded project: its pages read the most rollup rows

CONFIG: dict[str, Any] = {
    "server": {"master_key": MASTER},
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


@dataclass
class Call:
    """One measured route: its latencies (ms) over the repeats."""

    name: str
    path: str
    status: int = 0
    size: int = 0
    ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def worst(self) -> float:
        return max(self.ms)


@dataclass
class Run:
    """Everything measured on one database."""

    backend: str
    rows: int
    seed_wall_s: float = 0.0
    seed_cpu_s: float = 0.0
    seed_output: str = ""
    rollup_rows: dict[str, int] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)


def routes(since: str, until: str, last30: str, whole: str) -> list[tuple[str, str, str]]:
    """(group, name, path): every report API route and dashboard page, with realistic filters."""
    month = f"since={since}&until={until}"
    p = f"/admin/reports/projects/{PROJECT}"
    d = f"/dashboard/projects/{PROJECT}"
    out = [
        ("api", "projects report, this month", f"/admin/reports/projects?{month}"),
        ("api", "projects report, last 30 days, CSV", f"/admin/reports/projects?{last30}&format=csv"),
        ("api", "projects report, the whole ledger", f"/admin/reports/projects?{whole}"),
        ("api", "daily by project", f"/admin/reports/daily?{month}&group_by=project"),
        ("api", "daily by project, CSV", f"/admin/reports/daily?{month}&group_by=project&format=csv"),
    ]
    out += [
        ("api", f"project daily by {g}", f"{p}/daily?{month}&group_by={g}")
        for g in ("deployment", "model", "task", "sensitivity", "key", "user", "tag")
    ]
    out += [
        ("api", f"project breakdown by {g}", f"{p}/breakdown?{month}&group_by={g}")
        for g in ("model", "deployment", "key", "task", "sensitivity", "user", "tag", "project_tag")
    ]
    out += [
        ("api", "/admin/usage, this month", f"/admin/usage?{month}"),
        ("api", "/admin/usage by day and project", f"/admin/usage?{month}&group_by=day,project"),
        ("api", f"/admin/usage, {PROJECT}, by model", f"/admin/usage?{month}&project={PROJECT}&group_by=model"),
        ("dashboard", "overview", f"/dashboard?{month}"),
        ("dashboard", "overview, last 30 days", f"/dashboard?{last30}"),
        ("dashboard", "project page (by deployment)", f"{d}?{month}"),
        ("dashboard", "project page (by key)", f"{d}?{month}&by=key"),
        ("dashboard", "projects CSV", f"/dashboard/projects.csv?{month}"),
        ("dashboard", "daily CSV", f"/dashboard/daily.csv?{month}"),
        ("dashboard", "project table CSV (by user)", f"{d}/user.csv?{month}"),
        ("dashboard", "project chart CSV", f"{d}/daily.csv?{month}"),
    ]
    return out


def seed(config_path: Path, rows: int, days: int, projects: int) -> tuple[float, float, str]:
    """Run ``switchyard dev seed-ledger`` as a child; its wall and CPU seconds, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "dev",
            "seed-ledger",
            "--config",
            str(config_path),
            "--rows",
            str(rows),
            "--days",
            str(days),
            "--projects",
            str(projects),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout.strip()


def login(client: httpx.Client, key: str) -> None:
    form = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text[:300]
    answer = client.post("/dashboard/login", data={"key": key, "csrf": csrf.group(1)})
    assert answer.status_code == 303 and "switchyard_session" in client.cookies, answer.text[:300]


def measure(base: str, repeat: int, days: int, run: Run, log_dir: Path) -> None:
    today = datetime.now(UTC).date()
    first = today.replace(day=1)
    last = (
        first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    ) - timedelta(days=1)
    last30 = f"since={(today - timedelta(days=29)).isoformat()}&until={today.isoformat()}"
    whole = f"since={(today - timedelta(days=days)).isoformat()}&until={today.isoformat()}"
    master = {"authorization": f"Bearer {MASTER}"}
    made = httpx.post(
        f"{base}/admin/keys", headers=master, timeout=30, json={"project": PROJECT, "name": "bench-finance", "role": "finance"}
    ).json()
    finance = {"authorization": f"Bearer {made['key']}"}
    with httpx.Client(base_url=base, timeout=60) as dashboard, httpx.Client(base_url=base, headers=finance, timeout=60) as api:
        login(dashboard, made["key"])
        for group, name, path in routes(first.isoformat(), last.isoformat(), last30, whole):
            client = api if group == "api" else dashboard
            call = Call(f"{group}: {name}", path)
            client.get(path)  # warm-up (caches, connection)
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get(path)
                call.ms.append((time.perf_counter() - started) * 1000)
                call.status, call.size = answer.status_code, len(answer.content)
            if call.status != 200:
                raise RuntimeError(f"{path} answered {call.status}; see {log_dir}")
            run.calls.append(call)
            print(
                f"  {call.name:48s} median {call.median:6.1f} ms  worst {call.worst:6.1f} ms  {call.size:>9,} bytes", flush=True
            )


async def rollup_sizes(url: str) -> dict[str, int]:
    from sqlalchemy import text

    from gateway.db import Database

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return {
                t: int((await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar_one())
                for t in ("usage_records", "usage_daily", "usage_project_daily", "usage_daily_attribution")
            }
    finally:
        await db.aclose()


@asynccontextmanager
async def scratch_postgres(admin_dsn: str) -> AsyncIterator[str]:
    """A database of its own for the run, dropped afterwards."""
    import asyncpg

    name = f"switchyard_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def bench_backend(backend: str, args: argparse.Namespace, workdir: Path) -> Run:
    run = Run(backend, args.rows)
    async with AsyncExitStack() as stack:
        if backend == "postgres":
            url = await stack.enter_async_context(scratch_postgres(args.postgres))
        else:
            url = f"sqlite:///{workdir}/ledger.db"
        config_path = workdir / f"{backend}.yaml"
        config_path.write_text(yaml.safe_dump({**CONFIG, "database_url": url, "ledger": {"spool_dir": str(workdir / "spool")}}))
        print(f"{backend}: seeding {args.rows:,} rows ...", flush=True)
        run.seed_wall_s, run.seed_cpu_s, run.seed_output = await asyncio.to_thread(
            seed, config_path, args.rows, args.days, args.projects
        )
        print(f"  {run.seed_output} (wall {run.seed_wall_s:.1f} s, CPU {run.seed_cpu_s:.1f} s)", flush=True)
        run.rollup_rows = await rollup_sizes(url)
        port = free_port()
        gateway = Service(
            f"gateway-{backend}",
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            log_dir=workdir,
            env={"PYTHONPATH": str(ROOT)},
            cwd=workdir,
        )
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(gateway.start, lambda: http_ok(f"{base}/healthz"), 120)
        try:
            await asyncio.to_thread(measure, base, args.repeat, args.days, run, workdir)
        finally:
            gateway.stop()
    return run


def render(runs: list[Run], meta: dict[str, Any]) -> str:
    title = f"## Finance reports at {runs[0].rows:,} ledger rows"
    generated = (
        f"Generated by `python -m bench.reports` on {meta['date']} ({meta['cpu']}, {meta['cores']} cores, {meta['os']}, "
        f"revision {meta['revision']}; load average {meta['load_start']} at start, {meta['load_end']} at end, on a "
        "machine shared with other work). Rerun it to refresh this section; the rest of the file is not touched."
    )
    method = (
        f"The ledger is written by `switchyard dev seed-ledger` ({meta['projects']} projects, {meta['days']} days, rows and "
        "their daily rollups in one transaction per 50,000-row chunk), then `switchyard serve` answers on 127.0.0.1 and "
        f"every report route and dashboard page is called {meta['repeat']} times, one at a time, after a warm-up call, with "
        "a finance key (API) or a finance session (dashboard). Times are end to end over HTTP. Targets: seeding 1,000,000 "
        f"rows on SQLite in at most {SEED_TARGET_S:.0f} s; every call under {TARGET_MS:.0f} ms."
    )
    lines = [
        title,
        "",
        generated,
        "",
        method,
        "",
        "| | " + " | ".join(r.backend for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        "| seed: wall clock | "
        + " | ".join(
            f"{r.seed_wall_s:.1f} s" + (" ✅" if r.backend != "sqlite" or r.seed_wall_s <= SEED_TARGET_S else " ❌") for r in runs
        )
        + " |",
        "| seed: CPU of the seeding process | " + " | ".join(f"{r.seed_cpu_s:.1f} s" for r in runs) + " |",
        "| ledger rows | " + " | ".join(f"{r.rollup_rows.get('usage_records', 0):,}" for r in runs) + " |",
        "| `usage_daily` rollup rows | " + " | ".join(f"{r.rollup_rows.get('usage_daily', 0):,}" for r in runs) + " |",
        "| `usage_daily_attribution` rollup rows | "
        + " | ".join(f"{r.rollup_rows.get('usage_daily_attribution', 0):,}" for r in runs)
        + " |",
        *(
            [
                "| `usage_project_daily` rollup rows | "
                + " | ".join(f"{r.rollup_rows['usage_project_daily']:,}" for r in runs)
                + " |"
            ]
            if all("usage_project_daily" in r.rollup_rows for r in runs)
            else []
        ),
        "",
        "Median and slowest of the timed calls, in milliseconds (✅ slowest under 300 ms):",
        "",
        "| call | " + " | ".join(f"{r.backend} median | {r.backend} slowest" for r in runs) + " |",
        "|---|" + "---:|---:|" * len(runs),
    ]
    for i, call in enumerate(runs[0].calls):
        cells = []
        for r in runs:
            c = r.calls[i]
            cells += [f"{c.median:.1f}", f"{c.worst:.1f} {'✅' if c.worst < TARGET_MS else '❌'}"]
        lines.append(f"| {call.name} | " + " | ".join(cells) + " |")
    worst = max(c.worst for r in runs for c in r.calls)
    lines += ["", f"Slowest single call over everything: {worst:.1f} ms."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--projects", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SWITCHYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an admin DSN: the run creates a database of its own there and drops it afterwards",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": os_name(),
        "revision": git_revision(ROOT),
        "repeat": args.repeat,
        "load_start": round(os.getloadavg()[0], 2),
        "projects": args.projects,
        "days": args.days,
    }
    workdir = Path(tempfile.mkdtemp(prefix="switchyard-reports-bench-"))
    try:
        runs = [asyncio.run(bench_backend(b.strip(), args, workdir)) for b in args.backends.split(",") if b.strip()]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["load_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reports.json").write_text(json.dumps({"meta": meta, "runs": [asdict(r) for r in runs]}, indent=1))
    text = render(runs, meta)
    print(text)
    if not args.no_write:
        write_section(DOC, SECTION, text)
        print(f"wrote the {SECTION} section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

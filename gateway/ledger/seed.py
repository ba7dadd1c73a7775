"""``switchyard dev seed-ledger``: a realistic ledger, with its rollups, for demos and benchmarks.

Projects (with budgets sized so that some run hot and some go over; some monthly, some weekly,
one without), two to four keys each (with tags), and ``rows`` ledger rows spread over the last
``days`` days: busier on weekdays and in office hours, a few projects far bigger than the rest,
most traffic on the ``auto`` route. Like real applications, each key serves a few tasks (a web
key chats and summarises, a batch key extracts, classifies and embeds, with a project tag and no
end users), each project has its own mix of sensitivity levels, and confidential or restricted
requests only ever run on self-hosted deployments, as the routing policy guarantees. Token counts
are log-normal, some input is cached, about 1.5% of attempts fail. Costs are computed from the
config's deployment prices exactly as the gateway computes them. The same seed gives the same
ledger.

Rows and their rollups are written in one transaction per chunk, through the database's bulk
path (SQLite ``executemany``, PostgreSQL ``COPY``); the rollups come from the same
:func:`~gateway.ledger.rollups.rollup` the ledger writer uses.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.config import GatewayConfig
from gateway.db.engine import Database
from gateway.db.types import MONEY_SCALE
from gateway.ledger.rollups import MEASURES, Rollups, rollup, rollup_params
from gateway.reports.savings import ReferencePrices
from gateway.runtime import deployment_profile
from routing.types import DeploymentProfile

PROJECT_NAMES = (
    "checkout",
    "search",
    "support-bot",
    "analytics",
    "mobile-app",
    "data-platform",
    "marketing-copy",
    "internal-tools",
    "fraud-review",
    "docs-assistant",
    "sales-insights",
    "hr-helpdesk",
)
ERRORS = ((502, "upstream_error"), (429, "rate_limit_exceeded"), (504, "upstream_timeout"))
COLUMNS = (
    "id",
    "ts",
    "request_id",
    "project",
    "key_id",
    "requested_model",
    "route",
    "rule",
    "deployment",
    "provider",
    "locality",
    "sensitivity",
    "task",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_type",
    "streamed",
    "fallbacks",
    "end_user",
    "key_tags",
    "project_tag",
)
_UNIT = Decimal(10) ** MONEY_SCALE


@dataclass(frozen=True, slots=True)
class SeedKey:
    """A seeded app key and how its traffic looks: its tasks, end users and project tags."""

    id: str
    project: str
    name: str
    tags: tuple[str, ...]
    tags_text: str | None
    tasks: tuple[list[str], list[float]]  # a key serves a few tasks (values, cumulative weights)
    users: int  # distinct end users behind the key (0: a batch job, no user field)
    project_tag: tuple[list[str | None], list[float]]
    self_hosted_share: float


@dataclass(frozen=True, slots=True)
class SeedProject:
    name: str
    weight: float
    budget_usd: Decimal | None
    period: str
    keys: tuple[SeedKey, ...]
    levels: tuple[list[str], list[float]]  # the project's mix of sensitivity levels


@dataclass(frozen=True, slots=True)
class SeedResult:
    rows: int
    rollup_rows: int
    projects: int
    keys: int
    seconds: float


def _cumulative(pairs: Sequence[tuple[Any, float]]) -> tuple[list[Any], list[float]]:
    """Values and a cumulative distribution over them (ends at 1.0), for :func:`_draw`."""
    total = sum(w for _, w in pairs)
    return [v for v, _ in pairs], [acc / total for acc in itertools.accumulate(w for _, w in pairs)]


def _draw(dist: tuple[list[Any], list[float]], u: float) -> Any:
    values, cdf = dist
    return values[min(bisect.bisect_left(cdf, u), len(values) - 1)]


_KEY_KINDS = (  # name suffix, tasks, end users, project tag mix, self-hosted share
    ("web", [("chat", 6), ("summarize", 2), ("tool_use", 1)], 200, [(None, 88), ("campaign-q4", 8), ("beta", 4)], 0.5),
    ("batch", [("extract", 4), ("classify", 3), ("embed", 2)], 0, [("batch-nightly", 1)], 0.7),
    ("mobile", [("chat", 5), ("translate", 1)], 120, [(None, 90), ("beta", 10)], 0.4),
    ("ops", [("code", 4), ("reasoning", 2), ("summarize", 1)], 15, [(None, 95), ("experiment-17", 5)], 0.3),
)
_LEVEL_MIXES = (
    [("public", 80), ("internal", 17), ("confidential", 3)],
    [("internal", 70), ("public", 20), ("confidential", 10)],
    [("public", 92), ("internal", 8)],
    [("confidential", 60), ("internal", 30), ("restricted", 10)],
)


class LedgerSeeder:
    """Generates the projects, keys and rows; :func:`seed_ledger` writes them."""

    def __init__(
        self, config: GatewayConfig, *, rows: int, days: int, projects: int, seed: int = 7, now: datetime | None = None
    ) -> None:
        if rows < 0 or days < 1 or not 1 <= projects <= 500:
            raise ValueError("rows >= 0, days >= 1 and 1 <= projects <= 500")
        self.rows, self.days = rows, days
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.rng = random.Random(seed)
        self.profiles: dict[str, DeploymentProfile] = {d.name: deployment_profile(d) for d in config.deployments}
        self.prices = {n: ReferencePrices.from_prices(n, p.prices) for n, p in self.profiles.items()}
        self.self_hosted = [n for n, p in self.profiles.items() if p.locality == "self_hosted"] or list(self.profiles)
        self.hosted = [n for n, p in self.profiles.items() if p.locality == "hosted"] or self.self_hosted
        self.route = config.routes[0].name if config.routes else None
        self.projects = self._projects(projects)
        self._project_dist = _cumulative([(p, p.weight) for p in self.projects])
        self._days = self._day_distribution()
        self._hours = _cumulative([(h, 0.3 + math.exp(-((h + 0.5 - 14) ** 2) / 18)) for h in range(24)])
        self.projects = self._with_budgets()
        self._project_dist = _cumulative([(p, p.weight) for p in self.projects])

    def _projects(self, n: int) -> list[SeedProject]:
        rng = self.rng
        out = []
        for i in range(n):
            name = PROJECT_NAMES[i] if i < len(PROJECT_NAMES) else f"project-{i + 1:03d}"
            keys = []
            for suffix, tasks, users, tags, local in _KEY_KINDS[: 2 + i % 3]:
                key_tags = (f"team:{name.split('-')[0]}", "env:staging" if suffix == "ops" else "env:prod")
                digest = hashlib.sha256(f"seed-key:{name}:{suffix}".encode()).hexdigest()
                key_id = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
                keys.append(
                    SeedKey(
                        key_id,
                        name,
                        f"{name}-{suffix}",
                        key_tags,
                        '["' + '","'.join(sorted(key_tags)) + '"]',
                        _cumulative(tasks),
                        users,
                        _cumulative(tags),
                        min(0.95, max(0.05, local + rng.uniform(-0.15, 0.15))),
                    )
                )
            period = "weekly" if i % 5 == 3 else "monthly"
            levels = _cumulative(_LEVEL_MIXES[3] if name in ("fraud-review", "hr-helpdesk") else _LEVEL_MIXES[i % 3])
            out.append(SeedProject(name, 1 / (i + 1) ** 0.9, None, period, tuple(keys), levels))
        return out

    def _day_distribution(self) -> tuple[list[int], list[float]]:
        """Days ago (0 = today), weighted: weekdays busier than weekends, a gentle growth over time."""
        today = self.now.date()
        pairs = []
        for ago in range(self.days):
            day = today - timedelta(days=ago)
            weekday = 0.45 if day.weekday() >= 5 else 1.0
            growth = 1.0 + 0.5 * (self.days - ago) / self.days
            fraction = (
                (self.now - datetime.combine(day, datetime.min.time(), tzinfo=UTC)).total_seconds() / 86400 if ago == 0 else 1.0
            )
            pairs.append((ago, weekday * growth * min(1.0, fraction)))
        return _cumulative(pairs)

    def _with_budgets(self) -> list[SeedProject]:
        """Budgets sized to each project's expected spend, so that some run hot and some go over."""
        sample = LedgerSeeder.__new__(LedgerSeeder)
        sample.__dict__.update(self.__dict__)
        sample.rng, sample.rows = random.Random(self.rng.random()), 4000
        per_project: dict[str, Decimal] = {}
        for row in sample.generate():
            per_project[row["project"]] = per_project.get(row["project"], Decimal(0)) + row["cost_usd"]
        scale = Decimal(self.rows) / sample.rows / self.days  # sample spend -> spend per day
        multipliers = (Decimal("1.6"), Decimal("0.7"), Decimal("2.5"), Decimal("1.15"), Decimal(4), None, Decimal("0.85"))
        out = []
        for i, p in enumerate(self.projects):
            multiplier = multipliers[i % len(multipliers)]
            days = 7 if p.period == "weekly" else 30
            budget = None if multiplier is None else _nice(per_project.get(p.name, Decimal(0)) * scale * days * multiplier)
            out.append(SeedProject(p.name, p.weight, budget, p.period, p.keys, p.levels))
        return out

    def _timestamp(self) -> datetime:
        rng = self.rng
        day = self.now.date() - timedelta(days=_draw(self._days, rng.random()))
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        ts = start + timedelta(hours=_draw(self._hours, rng.random()), seconds=rng.random() * 3600)
        return ts if ts <= self.now else start + (self.now - start) * rng.random()

    def generate(self) -> Iterator[dict[str, Any]]:
        """The ledger rows, in no particular order."""
        rng = self.rng
        rand = rng.random
        for i in range(self.rows):
            project = _draw(self._project_dist, rand())
            key = project.keys[min(len(project.keys) - 1, int(rand() ** 1.8 * len(project.keys)))]
            level = _draw(project.levels, rand())
            task = _draw(key.tasks, rand())
            private = level in ("confidential", "restricted")
            if private or rand() < key.self_hosted_share:
                deployment = self.self_hosted[0] if task == "embed" or rand() < 0.6 else self.self_hosted[-1]
            else:
                deployment = self.hosted[0] if rand() < 0.7 else self.hosted[-1]
            pinned = not private and rand() < 0.05
            prompt = max(8, int(rng.lognormvariate(6.3, 0.9)))
            completion = 0 if task == "embed" else max(1, int(rng.lognormvariate(5.1, 0.8)))
            cached = int(prompt * (0.3 + 0.5 * rand())) if task != "embed" and rand() < 0.2 else 0
            status, error_type = 200, None
            if rand() < 0.015:
                status, error_type = ERRORS[int(rand() * len(ERRORS))]
                prompt = completion = cached = 0
            profile = self.profiles[deployment]
            yield {
                "id": f"seed-{i:09d}-{rng.getrandbits(32):08x}",
                "ts": self._timestamp(),
                "request_id": None,
                "project": project.name,
                "key_id": key.id,
                "requested_model": deployment if pinned or not self.route else self.route,
                "route": None if pinned else self.route,
                "rule": "keep-private-data-home" if private and not pinned else None,
                "deployment": deployment,
                "provider": profile.provider,
                "locality": profile.locality,
                "sensitivity": level,
                "task": task,
                "prompt_tokens": prompt,
                "cached_tokens": cached,
                "completion_tokens": completion,
                "cost_usd": self.prices[deployment].cost(prompt, cached, completion) if status == 200 else Decimal(0),
                "latency_ms": round(rng.lognormvariate(6.2, 0.6), 3),
                "ttft_ms": None,
                "status": status,
                "error_type": error_type,
                "streamed": rand() < 0.4,
                "fallbacks": 1 if rand() < 0.02 else 0,
                "end_user": f"user-{int(rng.paretovariate(1.1)) % key.users:03d}" if key.users else None,
                "key_tags": key.tags_text,
                "project_tag": _draw(key.project_tag, rand()),
            }


_ROUND = tuple(Decimal(f) for f in ("1", "1.2", "1.5", "2", "2.5", "3", "4", "5", "6", "8", "10"))


def _nice(amount: Decimal) -> Decimal:
    """The next round budget at or above ``amount`` (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k dollars; at least $1)."""
    if amount <= 1:
        return Decimal(1)
    magnitude = Decimal(10) ** (len(str(int(amount))) - 1)
    return next(f * magnitude for f in _ROUND if f * magnitude >= amount).normalize()


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def seed_ledger(
    db: Database, seeder: LedgerSeeder, *, chunk_rows: int = 50_000, progress: Callable[[int], None] | None = None
) -> SeedResult:
    """Write the seeder's projects, keys, rows and rollups; returns what was written and how long it took."""
    started = time.perf_counter()
    await db.migrate()
    await _write_projects_and_keys(db, seeder)
    written = rollups = 0
    if db.dialect == "sqlite":
        writer: Any = _SqliteBulk(db)
    else:
        writer = _PostgresBulk(db)
    try:
        for chunk in _chunks(seeder.generate(), chunk_rows):
            rollups += await writer.write(chunk)
            written += len(chunk)
            if progress is not None:
                progress(written)
    finally:
        await writer.close()
    keys = sum(len(p.keys) for p in seeder.projects)
    return SeedResult(written, rollups, len(seeder.projects), keys, time.perf_counter() - started)


async def _write_projects_and_keys(db: Database, seeder: LedgerSeeder) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    from gateway.db.models import ApiKey, Project

    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    now = datetime.now(UTC)
    async with db.engine.begin() as conn:
        for p in seeder.projects:
            await conn.execute(
                insert(Project.__table__)  # type: ignore[attr-defined]
                .values(
                    name=p.name,
                    budget_usd=p.budget_usd,
                    budget_period=p.period,
                    sensitivity_floor="public",
                    source="api",
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            for k in p.keys:
                secret = "sk-sy-seed-" + secrets.token_urlsafe(32)  # never printed: seeded keys cannot log in
                await conn.execute(
                    insert(ApiKey.__table__)  # type: ignore[attr-defined]
                    .values(
                        id=k.id,
                        key_hash=hashlib.sha256(secret.encode()).hexdigest(),
                        prefix=secret[:12],
                        project=p.name,
                        name=k.name,
                        models=[],
                        tags=list(k.tags),
                        budget_period="monthly",
                        created_at=now,
                        role="app",
                        projects=[],
                    )
                    .on_conflict_do_nothing(index_elements=["id"])
                )


def _rollup_sql(table: str, dims: tuple[str, ...], placeholder: Callable[[int], str]) -> str:
    cols = [*dims, *MEASURES]
    values = ", ".join(placeholder(i + 1) for i in range(len(cols)))
    updates = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in MEASURES)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values}) ON CONFLICT ({', '.join(dims)}) DO UPDATE SET {updates}"


def _rollup_tuples(
    groups: dict[tuple[str, ...], list[Any]], dims: tuple[str, ...], money: Callable[[Decimal], Any]
) -> list[tuple[Any, ...]]:
    out = []
    for params in rollup_params(groups, dims):
        out.append(
            tuple(params[d] for d in dims) + tuple(money(params[m]) if m == "cost_usd" else int(params[m]) for m in MEASURES)
        )
    return out


class _SqliteBulk:
    """Plain sqlite3 on the database file: executemany inside one transaction per chunk."""

    def __init__(self, db: Database) -> None:
        assert db.sqlite_path is not None, "seed-ledger needs a file database"
        self.conn = sqlite3.connect(db.sqlite_path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")  # a seed can simply be run again; the final commit is checkpointed
        self.conn.execute("PRAGMA cache_size=-200000")
        self.insert = f"INSERT OR IGNORE INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        self.upserts = {
            table.name: _rollup_sql(table.name, dims, lambda i: "?") for table, dims, _ in Rollups({}, {}, {}).tables()
        }

    async def write(self, rows: list[dict[str, Any]]) -> int:
        def units(value: Decimal) -> int:
            return int(value * _UNIT)

        records = [
            tuple(
                r[c].strftime("%Y-%m-%d %H:%M:%S.%f")
                if c == "ts"
                else units(r[c])
                if c == "cost_usd"
                else (1 if r[c] else 0)
                if c == "streamed"
                else r[c]
                for c in COLUMNS
            )
            for r in rows
        ]
        rollups = rollup(rows).tables()
        cur = self.conn.cursor()
        cur.execute("BEGIN")
        try:
            before = self.conn.total_changes
            cur.executemany(self.insert, records)
            if self.conn.total_changes - before != len(records):
                raise RuntimeError("seed rows collided with existing ledger rows; use another --seed")
            for table, dims, groups in rollups:
                cur.executemany(self.upserts[table.name], _rollup_tuples(groups, dims, units))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return sum(len(groups) for _, _, groups in rollups)

    async def close(self) -> None:
        self.conn.close()


class _PostgresBulk:
    """asyncpg: COPY for the rows, executemany upserts for the rollups, one transaction per chunk."""

    def __init__(self, db: Database) -> None:
        self.url = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn: Any = None
        self.upserts = {
            table.name: _rollup_sql(table.name, dims, lambda i: f"${i}") for table, dims, _ in Rollups({}, {}, {}).tables()
        }

    async def write(self, rows: list[dict[str, Any]]) -> int:
        import asyncpg

        if self.conn is None:
            self.conn = await asyncpg.connect(self.url)
        records = [tuple(r[c] for c in COLUMNS) for r in rows]
        rollups = rollup(rows).tables()
        async with self.conn.transaction():
            await self.conn.copy_records_to_table("usage_records", records=records, columns=list(COLUMNS))
            for table, dims, groups in rollups:
                await self.conn.executemany(self.upserts[table.name], _rollup_tuples(groups, dims, lambda v: v))
        return sum(len(groups) for _, _, groups in rollups)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

"""Seed the admission counters from the ledger at start, so a restart does not forget spend.

In memory mode every restart starts from zero; with Redis the counters may have been lost
(``seed_spend`` never overwrites a counter Redis still has). Rows still in a spool file are
not in the ledger yet and so are not counted; they are a few seconds of traffic at most.
Only positive costs count: a negative row (which no current gateway writes, but an old one or a
hand-edited ledger may hold) can never lower a budget's spend or stop the gateway from starting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import col, select

from gateway.admission.base import Admission, Subject, as_utc, budget_window
from gateway.db.engine import Database
from gateway.db.models import ApiKey, Project, UsageRecord


async def budget_subjects(db: Database) -> list[Subject]:
    """Every project and every live key that has a budget."""
    async with db.session() as session:
        projects = (await session.exec(select(Project).where(col(Project.budget_usd).is_not(None)))).all()
        keys = (
            await session.exec(select(ApiKey).where(col(ApiKey.budget_usd).is_not(None), col(ApiKey.revoked_at).is_(None)))
        ).all()
    subjects = [Subject("project", p.name, p.budget_usd, p.budget_period, p.rpm, p.tpm) for p in projects]
    subjects += [Subject("key", k.id, k.budget_usd, k.budget_period, k.rpm, k.tpm) for k in keys]
    return subjects


async def seed_from_ledger(
    admission: Admission, db: Database, subjects: Iterable[Subject] | None = None, *, now: datetime | None = None
) -> int:
    """Seed each subject's current window with the ledger's spend; returns how many were seeded."""
    now = as_utc(now or datetime.now(UTC))
    subject_list = list(subjects) if subjects is not None else await budget_subjects(db)
    groups: dict[tuple[str, str], list[Subject]] = defaultdict(list)
    for subject in subject_list:
        if subject.budget_usd is not None:
            groups[(subject.kind, subject.period)].append(subject)
    seeded = 0
    for (kind, period), members in groups.items():
        window = budget_window(period, now)  # type: ignore[arg-type]
        column = UsageRecord.key_id if kind == "key" else UsageRecord.project
        stmt = select(column, func.sum(UsageRecord.cost_usd)).where(UsageRecord.cost_usd > 0).group_by(column)
        if window.start is not None:
            stmt = stmt.where(UsageRecord.ts >= window.start)
        async with db.session() as session:
            spend = {name: total for name, total in (await session.exec(stmt)).all()}
        for subject in members:
            amount = max(spend.get(subject.id) or Decimal(0), Decimal(0))
            if await admission.seed_spend(subject, window.start or now, amount):
                seeded += 1
    return seeded

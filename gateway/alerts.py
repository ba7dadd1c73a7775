"""Budget alerts: a signed JSON webhook when a project or key crosses a threshold of its budget.

Thresholds are percents of a budget (``budget.alert_thresholds`` of a project or key, else
``alerts.thresholds``, by default 50/80/100). Spend is the ledger's: every committed batch of
rows marks its projects and keys for a check (:meth:`BudgetAlerts.observe`, wired to the ledger
writer), and a supervised task sums their spend in the current budget window from the daily
rollups at most every ``alerts.check_interval_s``. At start every budgeted subject is checked
once, so a threshold crossed while the gateway was down is still reported.

Once per threshold and period, across replicas: an alert is first *claimed* by inserting its
row into ``budget_alerts``, whose unique key is (subject, budget window, threshold); only the
replica whose insert succeeds delivers it. Delivery is a POST of the JSON payload to
``alerts.webhook_url`` with::

    x-switchyard-event: budget.threshold_crossed
    x-switchyard-delivery: <alert id>           the same on every retry: deduplicate on it
    x-switchyard-signature: t=<unix time>,v1=<hex HMAC-SHA256(alerts.secret, "<t>.<body>")>

retried with exponential backoff (``alerts.backoff_s``, doubling, at most ``max_attempts``) on
connection errors, timeouts, 408, 429 and 5xx; another 4xx is final. Each attempt's outcome is
kept on the row (``GET /admin/alerts``). A delivery cut short by shutdown stays undelivered there.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from gateway import __version__
from gateway.admission.base import Window, budget_window
from gateway.config import GatewayConfig
from gateway.db.engine import Database
from gateway.db.models import ApiKey, BudgetAlert, Project
from gateway.db.types import decimal_str
from gateway.reports.dates import DayRange
from gateway.reports.queries import grouped_sums

log = logging.getLogger("switchyard.alerts")
EVENT = "budget.threshold_crossed"
_RETRY_STATUSES = {408, 429}
_MAX_BACKOFF_S = 60.0


@dataclass(frozen=True, slots=True)
class Budgeted:
    """A project or key with a budget, as the alert checker sees it."""

    kind: str  # project | key
    id: str
    name: str
    project: str
    budget_usd: Decimal
    period: str
    thresholds: tuple[int, ...]


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``x-switchyard-signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """Check a received alert: the HMAC matches and the timestamp is recent (what a receiver should do)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if not parts.get("t", "").isdigit() or "v1" not in parts:
        return False
    timestamp = int(parts["t"])
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, body, timestamp), header)


def payload(alert: BudgetAlert, window: Window) -> dict[str, Any]:
    used = (alert.spend_usd * 100 / alert.budget_usd) if alert.budget_usd else Decimal(0)
    return {
        "id": alert.id,
        "type": EVENT,
        "created_at": alert.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": {"kind": alert.subject_kind, "id": alert.subject_id, "name": alert.subject_name, "project": alert.project},
        "threshold_pct": alert.threshold,
        "budget_usd": decimal_str(alert.budget_usd),
        "spend_usd": decimal_str(alert.spend_usd),
        "used_pct": float(used.quantize(Decimal("0.01"))),
        "period": alert.period,
        "window": {
            "id": window.id,
            "start": window.start.isoformat().replace("+00:00", "Z") if window.start else None,
            "end": window.end.isoformat().replace("+00:00", "Z") if window.end else None,
        },
    }


class BudgetAlerts:
    """Checks budgeted projects and keys against their thresholds and delivers each crossing once."""

    def __init__(
        self,
        db: Database,
        config: GatewayConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._session = session
        self._owns_session = session is None
        self._dirty_projects: set[str] = set()
        self._dirty_keys: set[str] = set()
        self._check_all = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[bool]] = set()
        self._closing = False
        self._busy = False
        self.delivered = 0
        self.failed = 0

    # ------------------------------------------------------------ wiring

    def observe(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows just committed to the ledger: their projects and keys may have crossed a threshold."""
        for row in rows:
            if row.get("cost_usd"):
                if row.get("project"):
                    self._dirty_projects.add(row["project"])
                if row.get("key_id"):
                    self._dirty_keys.add(row["key_id"])
        if self._dirty_projects or self._dirty_keys:
            self._wake.set()

    def reconfigure(self, config: GatewayConfig) -> None:
        """A reloaded config: new thresholds or webhook; everything is checked again."""
        self.config = config
        self._check_all = True
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="budget-alerts")

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop checking; give deliveries in flight ``timeout_s`` to finish, then cancel them."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._deliveries:
            _, pending = await asyncio.wait(self._deliveries, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None and self._owns_session:
            await self._session.close()

    async def idle(self) -> None:
        """Wait until no check is pending and no delivery is running (for tests and shutdown)."""
        while (  # noqa: ASYNC110 - several conditions; for tests and shutdown only
            self._wake.is_set() or self._check_all or self._dirty_projects or self._dirty_keys or self._deliveries or self._busy
        ):
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------ checking

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._wake.wait()
                self._busy = True
                self._wake.clear()
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("budget alert check failed")
                self._wake.set()
            finally:
                self._busy = False
            await asyncio.sleep(self.config.alerts.check_interval_s)

    async def check(self) -> int:
        """Compare the pending subjects' spend with their thresholds; claim and deliver what is new."""
        everything, self._check_all = self._check_all, False
        projects, self._dirty_projects = self._dirty_projects, set()
        keys, self._dirty_keys = self._dirty_keys, set()
        try:
            subjects = await self._subjects(None if everything else projects, None if everything else keys)
            claimed = 0
            for subject, spend, window in await self._spend(subjects):
                for threshold in subject.thresholds:
                    if spend * 100 >= subject.budget_usd * threshold and subject.budget_usd > 0:
                        alert = await self._claim(subject, threshold, spend, window)
                        if alert is not None:
                            claimed += 1
                            self._deliver_later(alert, window)
            return claimed
        except BaseException:
            self._dirty_projects |= projects
            self._dirty_keys |= keys
            self._check_all = self._check_all or everything
            raise

    async def _subjects(self, projects: set[str] | None, keys: set[str] | None) -> list[Budgeted]:
        default = tuple(self.config.alerts.thresholds)
        out: list[Budgeted] = []
        async with self.db.session() as session:
            stmt = select(Project).where(col(Project.budget_usd).is_not(None))
            if projects is not None:
                stmt = stmt.where(col(Project.name).in_(projects or {""}))
            for p in (await session.exec(stmt)).all():
                out.append(
                    Budgeted(
                        "project",
                        p.name,
                        p.name,
                        p.name,
                        p.budget_usd,  # type: ignore[arg-type]  # the query keeps only rows with a budget
                        p.budget_period,
                        tuple(p.alert_thresholds) if p.alert_thresholds is not None else default,
                    )
                )
            kstmt = select(ApiKey).where(col(ApiKey.budget_usd).is_not(None), col(ApiKey.revoked_at).is_(None))
            if keys is not None:
                kstmt = kstmt.where(col(ApiKey.id).in_(keys or {""}))
            for k in (await session.exec(kstmt)).all():
                out.append(
                    Budgeted(
                        "key",
                        k.id,
                        k.name,
                        k.project,
                        k.budget_usd,  # type: ignore[arg-type]  # the query keeps only rows with a budget
                        k.budget_period,
                        tuple(k.alert_thresholds) if k.alert_thresholds is not None else default,
                    )
                )
        return [s for s in out if s.thresholds]

    async def _spend(self, subjects: list[Budgeted]) -> list[tuple[Budgeted, Decimal, Window]]:
        """Each subject's spend in its current budget window, from the rollups (one query per window and kind)."""
        now = self._clock()
        groups: dict[tuple[str, str], list[Budgeted]] = {}
        for s in subjects:
            groups.setdefault((s.kind, s.period), []).append(s)
        out = []
        for (kind, period), members in groups.items():
            window = budget_window(period, now)  # type: ignore[arg-type]
            days = DayRange(window.start.date() if window.start else date(1970, 1, 1), now.date())
            projects = {m.project for m in members}
            found = await grouped_sums(self.db, days, ["project" if kind == "project" else "key"], projects=projects)
            spend = {key[0]: sums.cost for key, sums in found.items()}
            out += [(m, spend.get(m.id, Decimal(0)), window) for m in members]
        return out

    async def _claim(self, subject: Budgeted, threshold: int, spend: Decimal, window: Window) -> BudgetAlert | None:
        """Insert the alert unless it exists (this replica or another claimed it already)."""
        alert = BudgetAlert(
            subject_kind=subject.kind,
            subject_id=subject.id,
            subject_name=subject.name,
            project=subject.project,
            window_id=window.id,
            period=subject.period,
            threshold=threshold,
            budget_usd=subject.budget_usd,
            spend_usd=spend,
            created_at=self._clock(),
        )
        table = BudgetAlert.__table__  # type: ignore[attr-defined]
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(table)
            .values(**alert.model_dump())
            .on_conflict_do_nothing(index_elements=["subject_kind", "subject_id", "window_id", "threshold"])
            .returning(table.c.id)
        )
        async with self.db.engine.begin() as conn:
            inserted = (await conn.execute(stmt)).first()
        if inserted is None:
            return None
        log.warning(
            "%s '%s' crossed %d%% of its %s budget ($%s of $%s)",
            subject.kind,
            subject.name,
            threshold,
            subject.period,
            decimal_str(spend),
            decimal_str(subject.budget_usd),
        )
        return alert

    # ------------------------------------------------------------ delivery

    def _deliver_later(self, alert: BudgetAlert, window: Window) -> None:
        task = asyncio.create_task(self.deliver(alert, window), name=f"budget-alert-{alert.id}")
        self._deliveries.add(task)
        task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[bool]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("budget alert delivery crashed", exc_info=task.exception())

    async def deliver(self, alert: BudgetAlert, window: Window) -> bool:
        """POST the alert until the receiver takes it (2xx), a final refusal, or the attempts run out."""
        settings = self.config.alerts
        if not settings.webhook_url:
            await self._record(alert.id, attempts=0, error="no alerts.webhook_url configured")
            return False
        body = orjson.dumps(payload(alert, window))
        secret = settings.secret.get_secret_value() if settings.secret else ""
        delay = settings.backoff_s
        error = ""
        for attempt in range(1, settings.max_attempts + 1):
            headers = {
                "content-type": "application/json",
                "user-agent": f"switchyard-alerts/{__version__}",
                "x-switchyard-event": EVENT,
                "x-switchyard-delivery": alert.id,
            }
            if secret:
                headers["x-switchyard-signature"] = signature(secret, body, int(time.time()))
            retry = True
            try:
                session = await self._http()
                timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
                async with session.post(settings.webhook_url, data=body, headers=headers, timeout=timeout) as response:
                    if 200 <= response.status < 300:
                        await self._record(alert.id, attempts=attempt, delivered=True)
                        self.delivered += 1
                        return True
                    error = f"HTTP {response.status}"
                    retry = response.status >= 500 or response.status in _RETRY_STATUSES
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            await self._record(alert.id, attempts=attempt, error=error)
            if not retry or attempt == settings.max_attempts:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)
        self.failed += 1
        log.error("budget alert %s not delivered to %s: %s", alert.id, settings.webhook_url, error)
        return False

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _record(self, alert_id: str, *, attempts: int, delivered: bool = False, error: str | None = None) -> None:
        async with self.db.session() as session:
            row = await session.get(BudgetAlert, alert_id)
            if row is None:
                return
            row.attempts = attempts
            row.last_error = None if delivered else error
            if delivered:
                row.delivered_at = datetime.now(UTC)
            session.add(row)
            await session.commit()

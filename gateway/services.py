"""Start and stop the long-lived services behind the request path: ledger database, key store,
admission (Redis or in-process) and the batched ledger writer — in the order they depend on
each other, and back down in reverse."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.accounting import Accountant
from gateway.admission import Admission, make_admission, seed_from_ledger
from gateway.alerts import BudgetAlerts
from gateway.config import GatewayConfig
from gateway.db.engine import Database
from gateway.db.projects import sync_projects
from gateway.keys import KeyStore
from gateway.ledger import LedgerWriter
from gateway.settler import Settler

log = logging.getLogger("switchyard.services")


class StartupError(RuntimeError):
    """A dependency the gateway cannot serve without is unavailable; the message says which."""


@dataclass
class Services:
    db: Database
    keys: KeyStore
    admission: Admission
    ledger: LedgerWriter
    settler: Settler
    accountant: Accountant
    alerts: BudgetAlerts

    async def on_reload(self, config: GatewayConfig) -> None:
        """Projects follow the config; cached keys are re-read (their project limits may change)."""
        await sync_projects(self.db, config.projects)
        self.keys.invalidate()
        self.alerts.reconfigure(config)

    async def aclose(self) -> None:
        # Settlements first, the ledger next: everything in flight has been recorded by now.
        try:
            await self.settler.aclose()
            await self.ledger.aclose()
            await self.alerts.aclose()
        finally:
            try:
                await self.admission.aclose()
            finally:
                await self.db.aclose()


async def start_services(config: GatewayConfig, metrics: Any = None) -> Services:
    db = Database(config.database_url)
    try:
        await db.migrate()
        await sync_projects(db, config.projects)
    except Exception as exc:
        await db.aclose()
        raise StartupError(f"database {_redacted(config.database_url)} is not usable: {type(exc).__name__}: {exc}") from exc
    admission = make_admission(config.redis_url)
    try:
        await seed_from_ledger(admission, db)
    except Exception as exc:
        await admission.aclose()
        await db.aclose()
        where = _redacted(config.redis_url) if config.redis_url else "in-process admission"
        raise StartupError(f"{where}: cannot seed budgets from the ledger: {type(exc).__name__}: {exc}") from exc
    ledger = LedgerWriter(
        db,
        batch_size=config.ledger.batch_size,
        flush_interval_ms=config.ledger.flush_interval_ms,
        spool_dir=config.ledger.spool_dir,
    )
    alerts = BudgetAlerts(db, config)
    ledger.on_commit(alerts.observe)  # new spend may cross a budget alert threshold
    await ledger.start()
    await alerts.start()
    keys = KeyStore(db)
    settler = Settler(admission)
    settler.start()
    return Services(
        db=db,
        keys=keys,
        admission=admission,
        ledger=ledger,
        settler=settler,
        accountant=Accountant(admission, ledger, settler, metrics),
        alerts=alerts,
    )


def _redacted(url: str | None) -> str:
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[-1]}"

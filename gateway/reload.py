"""Hot reload: watch the config file and swap in a new runtime when a valid change lands.

A change is applied once the file has held still for ``server.reload_debounce_s`` (a file being
written is never half-applied). An invalid change is refused with a log line naming the key path
(so is a pinned model file whose sha256 does not match: :mod:`gateway.revisions`), and so is one
that removes a model still in use or weakens the master key without saying so
(:mod:`gateway.config_changes`); the running policy stays. Every applied change is logged as a
diff summary. Requests already in flight finish on the runtime they started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from gateway.config import ConfigError, load_config
from gateway.config_changes import config_diff, reload_refusals
from gateway.revisions import verify_revisions
from gateway.runtime import build_runtime, retire, warm_up
from gateway.state import GatewayState

log = logging.getLogger("switchyard.reload")


class ConfigWatcher:
    """Polls the config file's content hash; cheap, and works on every filesystem."""

    def __init__(self, state: GatewayState, path: Path, interval_s: float = 1.0) -> None:
        self.state = state
        self.path = path
        self.interval_s = interval_s
        self._digest = self._read_digest()
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.reloads = 0
        self.rejected = 0

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="config-watcher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("config reload failed; keeping the running config")

    async def check(self) -> bool:
        """Reload if the file changed and held still; True when a new config was applied."""
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        # An editor or a ConfigMap update may still be writing: wait until two reads agree.
        debounce = self.state.config.server.reload_debounce_s
        for _ in range(20):
            await asyncio.sleep(debounce)
            settled = self._read_digest()
            if settled == digest:
                break
            digest = settled
        self._digest = digest
        try:
            config = load_config(self.path)
            await asyncio.to_thread(verify_revisions, config, self.path)  # large files: off the event loop
        except ConfigError as exc:
            return self._refuse(f"\n{exc}")
        old = self.state.config
        refusals = reload_refusals(old, config, await self._in_use())
        if refusals:
            return self._refuse(" " + "; ".join(refusals))
        try:
            runtime = build_runtime(config, previous=self.state.runtime)
        except Exception as exc:  # noqa: BLE001 - e.g. a provider that cannot be constructed
            return self._refuse(f" {type(exc).__name__}: {exc}")
        await warm_up(runtime, previous=self.state.runtime)
        previous = self.state.swap(runtime)
        await self.state.services.on_reload(config)
        task = asyncio.create_task(retire(previous, runtime), name="retire-runtime")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        self.reloads += 1
        self.state.metrics.observe_reload()
        changes = config_diff(old, config)
        log.info("config reloaded from %s: %s", self.path, "; ".join(changes) if changes else "no effective change")
        return True

    def _refuse(self, why: str) -> bool:
        self.rejected += 1
        log.error("config reload refused, keeping the running config:%s", why)
        return False

    async def _in_use(self) -> set[str]:
        """Model names clients asked for recently, and every model a live key is limited to."""
        window = self.state.config.server.model_in_use_s
        now = time.monotonic()
        names = {name for name, seen in self.state.model_use.items() if now - seen <= window}
        try:
            names |= await self.state.keys.models_in_use()
        except Exception as exc:  # noqa: BLE001 - without the database, recent traffic still counts
            log.warning("cannot read the models keys are limited to (%s); judging by recent traffic only", exc)
        return names

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._retiring):
            await task

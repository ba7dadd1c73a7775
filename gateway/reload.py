"""Hot reload: watch the config file and swap in a new runtime when a valid change lands.

An invalid change is refused with a log line naming the key path; the running policy stays.
Requests already in flight finish on the runtime they started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from gateway.config import ConfigError, load_config
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
            except Exception:  # noqa: BLE001 - the watcher must outlive any single bad reload
                log.exception("config reload failed; keeping the running config")

    async def check(self) -> bool:
        """Reload if the file changed; True when a new config was applied."""
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            self.rejected += 1
            log.error("config reload refused, keeping the running config:\n%s", exc)
            return False
        try:
            runtime = build_runtime(config, previous=self.state.runtime)
        except Exception as exc:  # noqa: BLE001 - e.g. a provider that cannot be constructed
            self.rejected += 1
            log.error("config reload refused, keeping the running config: %s: %s", type(exc).__name__, exc)
            return False
        await warm_up(runtime, previous=self.state.runtime)
        old = self.state.swap(runtime)
        on_reload = self.state.extras.get("on_reload")
        if on_reload is not None:
            await on_reload(config)
        task = asyncio.create_task(retire(old, runtime), name="retire-runtime")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        self.reloads += 1
        self.state.metrics.info.set(self.reloads)
        log.info("config reloaded from %s", self.path)
        return True

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._retiring):
            await task

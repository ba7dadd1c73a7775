"""Child processes for the benchmark: start in their own process group, wait until ready, stop.

Every server the harness starts is a :class:`Service`; :class:`Services` stops them all (process
groups, SIGTERM then SIGKILL) in a ``finally``. Only 127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Service:
    """One child server process in its own session (so its whole group can be killed)."""

    def __init__(
        self, name: str, argv: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 60.0) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log {self.log_path}:\n{self.tail()}")
            if ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f}s; log {self.log_path}:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident memory of the process and all its children (uvicorn workers)."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu_seconds(self) -> float:
        """User+system CPU time of the process tree so far."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # the group may hold children that outlived the leader
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class Services:
    """Every service started in one run; ``stop_all`` in a ``finally``."""

    def __init__(self) -> None:
        self._services: list[Service] = []

    def add(self, service: Service) -> Service:
        self._services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        if service in self._services:
            self._services.remove(service)

    def stop_all(self) -> None:
        for service in reversed(self._services):
            try:
                service.stop()
            except Exception as exc:
                print(f"warning: stopping {service.name} failed: {exc}", file=sys.stderr)
        self._services.clear()


# ------------------------------------------------------------------ system packages

SYSTEM_TOOLS = {"wrk": "wrk", "nginx": "nginx-light"}  # executable -> Debian package


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)


def ensure_tools(names: Sequence[str] = ("wrk", "nginx")) -> dict[str, str]:
    """Paths of the system tools the harness drives; installs missing ones with apt-get as root."""
    missing = [n for n in names if find_tool(n) is None]
    if missing:
        packages = [SYSTEM_TOOLS[n] for n in missing]
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit(
                f"bench needs {', '.join(missing)}; install them first, e.g.\n"
                f"    sudo apt-get install -y {' '.join(packages)}\n"
                "(the harness installs them itself only when it runs as root on a Debian/Ubuntu machine)"
            )
        print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env, capture_output=True, text=True)
        if result.returncode != 0:  # the package lists may be missing on a fresh image
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
            result = subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")
    found = {n: find_tool(n) for n in names}
    still = [n for n, p in found.items() if p is None]
    if still:
        raise SystemExit(f"bench needs {', '.join(still)} but cannot find it after installing")
    return {n: p for n, p in found.items() if p is not None}


def raise_fd_limit(wanted: int = 65536) -> None:
    """500 concurrent streams need ~2,000 sockets across the processes; children inherit this."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

"""What the numbers were measured on: machine, versions, and how busy the machine was."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import math
import os
import platform
import subprocess
import time
from pathlib import Path

import psutil

PACKAGES = ("switchyard-gateway", "uvicorn", "uvloop", "httptools", "aiohttp", "fastapi", "starlette", "orjson", "pydantic")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def git_revision(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    rev = out.stdout.strip() or "no commit yet"
    return rev + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def busy_processes(exclude: set[int], sample_s: float = 1.0, min_pct: float = 5.0) -> list[str]:
    """Other processes using CPU right now (name and %), to judge how noisy the run is."""
    procs = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["pid"] in exclude:
            continue
        try:
            proc.cpu_percent(None)
            procs.append(proc)
        except psutil.Error:
            pass
    time.sleep(sample_s)
    busy = []
    for proc in procs:
        try:
            pct = proc.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= min_pct:
            busy.append((pct, proc.info["name"]))
    return [f"{name} {pct:.0f}%" for pct, name in sorted(busy, reverse=True)[:6]]


def describe(root: Path, wrk: str, nginx: str) -> dict[str, object]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "-"
    mem = psutil.virtual_memory()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(mem.total / 2**30, 1),
        "os": f"{os_name()}, kernel {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "wrk": tool_version([wrk, "-v"]),
        "nginx": tool_version([nginx, "-v"]),
        "revision": git_revision(root),
    }


# ---------------------------------------------------------------- load from other processes

QUIET_MEDIAN_PCT = 10.0  # others' CPU, summed, in % of one core: the median sample may not exceed this
QUIET_P90_PCT = 25.0  # ... nor the 90th-percentile sample (a burst now and then is tolerated)


def _own_tree(root_pid: int) -> set[int]:
    try:
        root = psutil.Process(root_pid)
        return {root_pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        return {root_pid}


def _cpu_by_pid() -> dict[int, tuple[float, str]]:
    out: dict[int, tuple[float, str]] = {}
    for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
        times = proc.info.get("cpu_times")
        if times is not None:
            out[proc.info["pid"]] = (times.user + times.system, proc.info["name"] or "?")
    return out


def others_cpu(root_pid: int, seconds: float, top_n: int = 5) -> tuple[float, list[tuple[str, float]]]:
    """CPU used by every process outside ``root_pid``'s tree over ``seconds``, in % of one core,
    and the busiest of them by name. Processes that start and end inside the window are missed."""
    before = _cpu_by_pid()
    time.sleep(seconds)
    after = _cpu_by_pid()
    mine = _own_tree(root_pid)
    by_name: dict[str, float] = {}
    for pid, (cpu, name) in after.items():
        if pid in mine or pid not in before:
            continue
        used = max(0.0, cpu - before[pid][0]) / seconds * 100
        if used > 0:
            by_name[name] = by_name.get(name, 0.0) + used
    top = sorted(by_name.items(), key=lambda kv: kv[1], reverse=True)
    return sum(by_name.values()), [(n, round(p, 1)) for n, p in top[:top_n]]


def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (the 90th of 10 samples is the 9th, not the 10th)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def is_quiet(samples: list[float]) -> bool:
    if not samples:
        return True
    ordered = sorted(samples)
    return _rank(ordered, 0.5) <= QUIET_MEDIAN_PCT and _rank(ordered, 0.9) <= QUIET_P90_PCT


class LoadWatch:
    """Samples, in a thread, how much CPU processes outside this run use (``interval_s`` windows),
    so that the report can say whether the machine was quiet. The run's own processes (every
    descendant of this one: servers, wrk, nginx, Redis) are left out."""

    def __init__(self, interval_s: float = 2.0) -> None:
        import threading

        self.interval_s = interval_s
        self.samples: list[float] = []
        self.top: dict[str, float] = {}  # name -> peak % seen in one window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                total, top = others_cpu(os.getpid(), self.interval_s)
            except Exception:
                continue
            self.samples.append(round(total, 1))
            for name, pct in top:
                self.top[name] = max(self.top.get(name, 0.0), pct)

    def start(self) -> LoadWatch:
        self._thread.start()
        return self

    def stop(self) -> dict[str, object]:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        return summarise_load(self.samples, self.top)


def summarise_load(samples: list[float], top: dict[str, float]) -> dict[str, object]:
    ordered = sorted(samples)

    def pick(q: float) -> float | None:
        return _rank(ordered, q) if ordered else None

    return {
        "samples": len(samples),
        "median_pct": pick(0.5),
        "p90_pct": pick(0.9),
        "max_pct": ordered[-1] if ordered else None,
        "quiet": is_quiet(samples),
        "busiest": sorted(((n, p) for n, p in top.items() if p >= 5.0), key=lambda kv: kv[1], reverse=True)[:6],
    }


def wait_for_quiet(timeout_s: float, window_s: float = 10.0, log=print) -> dict[str, object]:
    """Sample windows of ``window_s`` until one is quiet (sampled every 2 s) or ``timeout_s`` passes.
    Returns the last window's summary (``quiet`` says which)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples, top = [], {}
        for _ in range(max(1, round(window_s / 2))):
            total, busiest = others_cpu(os.getpid(), 2.0)
            samples.append(round(total, 1))
            for name, pct in busiest:
                top[name] = max(top.get(name, 0.0), pct)
        summary = summarise_load(samples, top)
        if summary["quiet"] or time.monotonic() >= deadline:
            return summary
        log(
            f"machine busy (others: median {summary['median_pct']}% of a core, p90 {summary['p90_pct']}%; "
            f"{', '.join(f'{n} {p:.0f}%' for n, p in summary['busiest']) or '-'}); waiting, "
            f"{deadline - time.monotonic():.0f} s left"
        )

"""What the numbers were measured on: machine, versions, and how busy the machine was."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
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

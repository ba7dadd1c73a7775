"""The routing targets of issue 12, from ``python -m bench.routing_bench`` run inside ``python -m bench``.

The routing benchmark prints markdown (it writes docs/benchmarks-routing.md itself when run alone;
here it runs with ``--no-write``). Two layouts are read: one table of prompt sizes, or several
sections of which the first, *cold* (every sample's text new to the scan cache), is the one the
targets are judged on. A row reads ``| 4 KB | samples | p50 ms | p99 ms | quietest-round p99 ms | p50 µs/KB |``.

Targets: p99 at 4 KB, and the marginal cost per KB beyond 4 KB, from the p50s of the largest size
and of 4 KB: ``(p50[largest] - p50[4 KB]) / (largest - 4)``. Classification is linear in the text,
so this is the slope a long prompt pays; the 1 KB row also carries the fixed cost of a plan.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_ROW = re.compile(r"^\|\s*(\d+)\s*KB\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|")


def parse(markdown: str) -> dict[str, Any]:
    """Rows of the first (cold) table and the two figures the targets need."""
    rows: list[dict[str, float]] = []
    section = ""
    for line in markdown.splitlines():
        if line.startswith("## ") and not rows:
            section = line.removeprefix("## ").strip()
        match = _ROW.match(line)
        if match:
            size, n, p50, p99, best, per_kb = match.groups()
            rows.append(
                {
                    "kb": int(size),
                    "samples": int(n),
                    "p50_ms": float(p50),
                    "p99_ms": float(p99),
                    "p99_best_ms": float(best),
                    "p50_us_per_kb": float(per_kb),
                }
            )
        elif rows:
            break  # the first table only
    if not rows:
        raise ValueError("no table of prompt sizes in the routing benchmark's output")
    by_kb = {r["kb"]: r for r in rows}
    four = by_kb.get(4)
    largest = max(rows, key=lambda r: r["kb"])
    out: dict[str, Any] = {
        "table": section or "one table",
        "rows": rows,
        "p99_ms_at_4kb": four["p99_ms"] if four else None,
        "us_per_kb_beyond_4kb": None,
    }
    if four and largest["kb"] > 4:
        out["us_per_kb_beyond_4kb"] = round((largest["p50_ms"] - four["p50_ms"]) * 1000 / (largest["kb"] - 4), 2)
        out["largest_kb"] = largest["kb"]
    stamp = re.search(r"^- python: (.+)$", markdown, re.M)
    out["python"] = stamp.group(1) if stamp else None
    return out


def measure(quick: bool = False, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the routing benchmark in its own interpreter and parse what it prints."""
    argv = [sys.executable, "-m", "bench.routing_bench", "--no-write", *(["--quick"] if quick else [])]
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"failed": f"python -m bench.routing_bench took over {timeout_s:.0f} s"}
    if proc.returncode != 0:
        return {"failed": f"python -m bench.routing_bench exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    try:
        return {**parse(proc.stdout), "markdown": proc.stdout}
    except ValueError as exc:
        return {"failed": str(exc)}

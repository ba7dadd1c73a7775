"""wrk as the load driver for JSON requests: a generated Lua script POSTs a body file and prints
one machine-readable summary line (``WRKJSON {...}``) from its ``done`` hook.

Runs are bounded by duration only: wrk's main thread sleeps for the whole ``-d`` even when a
script stops its threads early, so a request count is reached by running in chunks (see
``Bench.memory``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

_LUA = """
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
{header_lines}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


@dataclass(slots=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # socket errors (connect/read/write/timeout) + non-2xx/3xx answers
    status_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    connections: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "rps": round(self.rps, 1),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "connections": self.connections,
        }


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for plain ASCII


def write_script(path: Path, body_path: Path, headers: dict[str, str]) -> Path:
    header_lines = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    path.write_text(_LUA.format(body_path=_lua_string(str(body_path)), header_lines=header_lines))
    return path


def run_wrk(
    wrk: str,
    url: str,
    body_path: Path,
    *,
    headers: dict[str, str],
    connections: int,
    duration_s: float,
    script_dir: Path,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> WrkResult:
    """One wrk run; raises RuntimeError when wrk itself fails."""
    threads = max(1, min(threads, connections))
    script = write_script(script_dir / f"wrk-{abs(hash((url, str(body_path))))}.lua", body_path, headers)
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    data = json.loads(line.removeprefix("WRKJSON "))
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=socket_errors + data["status"],
        status_errors=data["status"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p999_ms=data["p999_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        connections=connections,
    )

"""Server and interpreter experiments: Switchyard under uvicorn or Granian, on Python 3.11, 3.12, 3.13.

``python -m bench.servers [--quick] [--rounds 5] [--duration 5] [--servers uvicorn,granian]
[--pythons 3.11,3.12,3.13] [--no-write]``

Every combination serves the ``features-redis`` variant (a virtual key with a budget, Redis
admission, the SQLite ledger, routing over two candidates) on one worker, with its own config,
database and Redis, in front of the same nginx upstream. All of them are started first and stay
up; then each round drives small chat requests at 50 connections through each in turn, the order
rotated every round so that drift in the machine's load does not favour one. Reported: req/s and
the server's CPU µs per request, medians over the rounds, each against uvicorn on 3.11 (what
``switchyard serve`` runs today).

- **uvicorn**: ``switchyard serve`` (uvicorn with httptools and uvloop).
- **Granian** (ASGI): ``granian --interface asgi --factory gateway.cli:app_from_env`` with
  ``SWITCHYARD_CONFIG`` naming the config, the factory ``switchyard serve --workers N`` already
  uses; ``--loop uvloop``, one worker, websockets off. Granian's RSGI interface is not measured:
  the gateway is an ASGI application and would need an RSGI entry point of its own.
- **Interpreters**: 3.11 is the interpreter running this module (the project's venv); every other
  version gets a throwaway venv in ``bench/.pyvenvs/`` (git-ignored) from pyenv's build of it, with
  ``pip install -e '.[perf]'`` (the project and Granian; the embedded model's extra is not needed).

The table goes into docs/benchmarks.md between ``<!-- server-experiments:start/end -->`` markers
(``--no-write``: print it only); the raw rounds into bench/results/servers.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.machine import LoadWatch, describe, wait_for_quiet
from bench.procs import Services, ensure_tools, raise_fd_limit
from bench.scenarios import Bench, Plan
from bench.sections import write_section
from bench.targets import SERVERS, VARIANTS, Target, start_switchyard
from bench.upstreams import start_nginx

ROOT = Path(__file__).resolve().parent.parent
VENVS = Path(__file__).resolve().parent / ".pyvenvs"
RESULTS = Path(__file__).resolve().parent / "results"
SECTION = "server-experiments"
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
BASELINE = ("uvicorn", "3.11")


@dataclass(frozen=True)
class Combo:
    server: str
    python: str  # "3.12"
    executable: str

    @property
    def label(self) -> str:
        return f"{self.server}-py{self.python}"


def _version_of(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def pyenv_interpreter(minor: str) -> str:
    """The newest pyenv build of ``minor`` (e.g. 3.12 -> ~/.pyenv/versions/3.12.1/bin/python)."""
    found = sorted(
        glob.glob(str(PYENV_ROOT / "versions" / f"{minor}.*" / "bin" / "python")),
        key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()],
    )
    if not found:
        raise RuntimeError(f"no Python {minor} under {PYENV_ROOT}/versions (pyenv install {minor})")
    return found[-1]


def ensure_venv(minor: str, log: Path) -> str:
    """The python of ``minor``: this interpreter when it is that version, else a throwaway venv in
    bench/.pyvenvs with the project installed editable (and Granian, from the ``perf`` extra)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        return sys.executable
    base = pyenv_interpreter(minor)
    venv = VENVS / f"py{Path(base).parent.parent.name}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if python.exists() and stamp.exists():
        return str(python)
    print(f"building a venv for Python {minor} in {venv} (once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[perf]"],
    ]
    with open(log, "ab") as out:
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, timeout=1800).returncode != 0:
                raise RuntimeError(f"`{' '.join(step)}` failed; see {log}")
    stamp.write_text(_version_of(str(python)))
    return str(python)


def _package_version(python: str, name: str) -> str:
    out = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip() or "-"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    pythons = [p.strip() for p in args.pythons.split(",") if p.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        raise SystemExit(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    tools = ensure_tools(("wrk", "nginx"))
    raise_fd_limit()
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-servers-"))
    results: dict[str, Any] = {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": 50,
        "combos": {},
        "unavailable": {},
        "meta": describe(ROOT, tools["wrk"], tools["nginx"]),
    }
    results["meta"]["others_before"] = wait_for_quiet(0.0, window_s=4.0, log=log)
    combos: list[Combo] = []
    for minor in pythons:
        try:
            python = ensure_venv(minor, run_dir / f"venv-{minor}.log")
        except Exception as exc:
            for server in servers:
                results["unavailable"][f"{server}-py{minor}"] = str(exc)[:300]
            log(f"Python {minor}: not available ({exc})")
            continue
        combos += [Combo(server, minor, python) for server in servers]
    services = Services()
    watch = LoadWatch().start()
    targets: dict[Combo, Target] = {}
    try:
        nginx = start_nginx(services, tools["nginx"], run_dir)
        for combo in combos:
            try:
                targets[combo] = start_switchyard(
                    services,
                    run_dir,
                    nginx,
                    nginx,
                    variant=VARIANTS["features-redis"],
                    python=combo.executable,
                    server=combo.server,
                    label=combo.label,
                )
            except Exception as exc:
                results["unavailable"][combo.label] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                log(f"{combo.label}: not available ({results['unavailable'][combo.label]})")
                continue
            results["combos"][combo.label] = {
                "server": combo.server,
                "python": _version_of(combo.executable),
                "runs": [],
                "server_version": _package_version(combo.executable, combo.server),
            }
            log(
                f"{combo.label} up ({results['combos'][combo.label]['python']}, "
                f"{combo.server} {results['combos'][combo.label]['server_version']})"
            )
        live = list(targets)
        bench = Bench(tools["wrk"], run_dir, Plan(duration_s=args.duration), list(targets.values()), "", log=log)
        for combo in live:  # warm-up: pools, caches, first-request imports
            bench.wrk_run(targets[combo], targets[combo].chat_url, bench.chat_body(targets[combo]), 50, args.warmup)
        for r in range(args.rounds):
            order = live[r % len(live) :] + live[: r % len(live)] if live else []
            for combo in order:
                target = targets[combo]
                try:
                    res = bench.wrk_run(target, target.chat_url, bench.chat_body(target), 50)
                except Exception as exc:
                    res = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
                results["combos"][combo.label]["runs"].append(res)
                log(
                    f"  [r{r + 1}] {combo.label:<18} rps={res.get('rps')} cpu_us={res.get('cpu_us_per_req')} "
                    f"errors={res.get('errors')}"
                )
    finally:
        services.stop_all()
        results["meta"]["others_during"] = watch.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    for data in results["combos"].values():
        ok = [r for r in data["runs"] if "failed" not in r]
        data["rps"] = _median([r["rps"] for r in ok])
        data["cpu_us_per_req"] = _median([r["cpu_us_per_req"] for r in ok if r.get("cpu_us_per_req") is not None])
        data["errors"] = sum(r["errors"] for r in ok)
    return results


def render(results: dict[str, Any]) -> str:
    from bench.report import load_line, machine_quiet

    combos = results["combos"]
    base = combos.get(f"{BASELINE[0]}-py{BASELINE[1]}", {})
    m = results["meta"]
    quiet = machine_quiet(m)
    L = [
        "## Server and interpreter experiments",
        "",
        f"Generated by `python -m bench.servers` on {m['date']} (revision {m['revision']}). `switchyard+features+redis` "
        f"on one worker under each server and interpreter, small chat at {results['connections']} connections, "
        f"{results['duration_s']:g} s per measurement, {results['rounds']} rounds with the order rotated each round; "
        "medians of the rounds. Machine: "
        + ("quiet" if quiet else "**busy**, do not judge from this run" if quiet is False else "not checked")
        + f" (other processes during the run: {load_line(m.get('others_during'))}).",
        "",
    ]
    rows = []
    for d in sorted(combos.values(), key=lambda c: -(c.get("rps") or 0)):
        rps_x = d["rps"] / base["rps"] if d.get("rps") and base.get("rps") else None
        cpu_x = d["cpu_us_per_req"] / base["cpu_us_per_req"] if d.get("cpu_us_per_req") and base.get("cpu_us_per_req") else None
        spread = [r["rps"] for r in d["runs"] if "rps" in r]
        rows.append(
            [
                f"{d['server']} {d['server_version']}",
                d["python"],
                f"{d['rps']:,.0f}" if d.get("rps") else "-",
                f"{min(spread):,.0f}-{max(spread):,.0f}" if spread else "-",
                f"{rps_x:.2f}x" if rps_x else "-",
                f"{d['cpu_us_per_req']:.0f}" if d.get("cpu_us_per_req") else "-",
                f"{cpu_x:.2f}x" if cpu_x else "-",
                str(d.get("errors", "-")),
            ]
        )
    L += [
        "| server | Python | req/s @50 | range | vs uvicorn 3.11 | CPU µs/req | CPU vs uvicorn 3.11 | errors |",
        "|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    measured = [d for d in combos.values() if d.get("rps")]
    if measured and base.get("rps") and base.get("cpu_us_per_req"):
        fast = max(measured, key=lambda d: d["rps"])
        cheap = min((d for d in measured if d.get("cpu_us_per_req")), key=lambda d: d["cpu_us_per_req"], default=fast)
        L.append(
            f"Most req/s: **{fast['server']} on Python {fast['python']}**, {fast['rps'] / base['rps']:.2f}x uvicorn on "
            f"3.11 ({(fast['rps'] / base['rps'] - 1) * 100:+.0f}%). Least CPU per request: **{cheap['server']} on "
            f"Python {cheap['python']}**, {cheap['cpu_us_per_req'] / base['cpu_us_per_req']:.2f}x uvicorn on 3.11 "
            f"({(cheap['cpu_us_per_req'] / base['cpu_us_per_req'] - 1) * 100:+.0f}%)."
        )
        L.append("")
    L.append(
        "CPU per request counts every thread of the server's processes. Granian does its HTTP I/O on a Rust "
        "thread beside the Python one, so on one worker it can serve more req/s by using more than one core "
        "while costing more CPU per request; with one worker per core (or replicas filling a node), CPU per "
        "request is what decides the throughput of the machine."
    )
    L.append("")
    L.append(
        "Granian's RSGI interface is not measured: the gateway is an ASGI application and would need an RSGI "
        "entry point of its own. Granian runs on the same factory as `switchyard serve --workers N` "
        "(`gateway.cli:app_from_env`), so no change to the gateway was needed for ASGI."
    )
    for label, reason in results.get("unavailable", {}).items():
        L.append(f"- **{label}** not measured: {reason}")
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s: check that the experiment works")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--pythons", default="3.11,3.12,3.13")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section; leave docs/ untouched")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 2, 3.0, 1.0
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    results = run(args, log)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "servers.json").write_text(json.dumps(results, indent=1, default=str))
    section = render(results)
    print(section)
    if not args.no_write:
        write_section(args.out, SECTION, section)
        log(f"wrote the {SECTION} section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

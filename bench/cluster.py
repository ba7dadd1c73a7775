"""N local Switchyard replicas on their own ports, behind Debian's nginx, sharing Redis and a database.

Command line (``scripts/local-cluster.sh`` wraps it)::

    python -m bench.cluster up --config FILE [--replicas 3] [--port 8080] [--dir .cluster]
    python -m bench.cluster restart [--dir .cluster]   # rolling: drain, restart and await each in turn
    python -m bench.cluster status [--dir .cluster]
    python -m bench.cluster down [--dir .cluster]

From Python (tests, the benchmark)::

    with LocalCluster(config_path, replicas=3, run_dir=tmp_dir) as cluster:
        cluster.base_url            # nginx: http://127.0.0.1:PORT
        cluster.restart(0)          # SIGTERM, wait for exit (returns the status), start, wait for /readyz

The replicas share whatever the config names: ``redis_url`` is required (budgets, rate limits and
circuit breakers must be shared), and the database should be PostgreSQL. nginx proxies with
``deploy/nginx/proxy.conf``, the file the compose deployment uses. Every process runs in its own
session; ``down`` stops exactly the processes recorded in the run directory's ``cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from bench.procs import ensure_tools, free_port, http_ok

ROOT = Path(__file__).resolve().parent.parent
PROXY_CONF = ROOT / "deploy" / "nginx" / "proxy.conf"
STATE_FILE = "cluster.json"


@dataclass
class Replica:
    """One ``switchyard serve`` process of the cluster."""

    index: int
    port: int
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LocalCluster:
    """Start, restart and stop replicas and their nginx (see the module docstring)."""

    def __init__(
        self,
        config: Path,
        replicas: int = 3,
        *,
        run_dir: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        ready_timeout_s: float = 90.0,
    ) -> None:
        self.config = Path(config).resolve()
        self.run_dir = Path(run_dir).resolve()
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.ready_timeout_s = ready_timeout_s
        self.replicas = [Replica(i, 0) for i in range(replicas)]
        self.nginx_pid = 0
        self._nginx: subprocess.Popen[bytes] | None = None
        self.drain_timeout_s = 30.0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_config()
        for replica in self.replicas:
            replica.port = replica.port or free_port()
        try:
            with ThreadPoolExecutor(len(self.replicas)) as pool:
                list(pool.map(self._start_replica, self.replicas))
            self._start_nginx()
            self.save()
        except BaseException:
            self.stop()  # never leave a process behind
            raise
        return self

    def stop(self) -> list[int | None]:
        """SIGTERM every replica (they drain in parallel), then stop nginx; the replicas' exit statuses."""
        with ThreadPoolExecutor(max(1, len(self.replicas))) as pool:
            codes = list(pool.map(self._stop_replica, self.replicas))
        if self.nginx_pid:
            _terminate(self.nginx_pid, self._nginx, signal.SIGQUIT, timeout_s=10)  # QUIT: graceful
            self.nginx_pid = 0
        if self.run_dir.is_dir():
            self.save()
        return codes

    def restart(self, index: int) -> int | None:
        """Drain and stop replica ``index``, start it again on its port, wait until it is ready."""
        replica = self.replicas[index]
        code = self._stop_replica(replica)
        self._start_replica(replica)
        self.save()
        return code

    def rolling_restart(self, pause_s: float = 0.0) -> list[int | None]:
        """Restart every replica, one at a time; their exit statuses."""
        codes = []
        for replica in self.replicas:
            codes.append(self.restart(replica.index))
            time.sleep(pause_s)
        return codes

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- state across command-line invocations ----------------------------------------------
    def save(self) -> None:
        state = {
            "config": str(self.config),
            "port": self.port,
            "nginx_pid": self.nginx_pid,
            "drain_timeout_s": self.drain_timeout_s,
            "replicas": [{"index": r.index, "port": r.port, "pid": r.pid} for r in self.replicas],
        }
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def attach(cls, run_dir: Path) -> LocalCluster:
        """The cluster a previous ``up`` started in ``run_dir``."""
        state = json.loads((Path(run_dir) / STATE_FILE).read_text())
        cluster = cls(Path(state["config"]), len(state["replicas"]), run_dir=run_dir, port=state["port"])
        cluster.replicas = [Replica(r["index"], r["port"], r["pid"]) for r in state["replicas"]]
        cluster.nginx_pid = state["nginx_pid"]
        cluster.drain_timeout_s = state.get("drain_timeout_s", 30.0)
        return cluster

    # -- internals -------------------------------------------------------------------------
    def _check_config(self) -> None:
        from gateway.config import load_config

        config = load_config(self.config)
        if not config.redis_url:
            raise SystemExit(f"{self.config}: replicas must share budgets, limits and breakers: set redis_url")
        if config.database_url.startswith("sqlite"):
            print(f"warning: {self.config}: replicas on SQLite share one file; use PostgreSQL as in production", file=sys.stderr)
        self.drain_timeout_s = config.server.drain_timeout_s

    def _start_replica(self, replica: Replica) -> None:
        argv = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(self.config),
            "--port",
            str(replica.port),
            "--log-level",
            "warning",
        ]
        with open(self.run_dir / f"replica-{replica.index}.log", "ab") as log:
            replica.proc = subprocess.Popen(
                argv, cwd=self.run_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        replica.pid = replica.proc.pid
        deadline = time.monotonic() + self.ready_timeout_s
        while not http_ok(replica.base_url + "/readyz"):
            if replica.proc.poll() is not None:
                raise RuntimeError(f"replica {replica.index} exited with {replica.proc.returncode}:\n{self._tail(replica)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.index} not ready in {self.ready_timeout_s:.0f}s:\n{self._tail(replica)}")
            time.sleep(0.1)

    def _stop_replica(self, replica: Replica) -> int | None:
        if not replica.pid:
            return None
        code = _terminate(replica.pid, replica.proc, signal.SIGTERM, timeout_s=self.drain_timeout_s + 15)
        replica.pid, replica.proc = 0, None
        return code

    def _start_nginx(self) -> None:
        nginx = ensure_tools(("nginx",))["nginx"]
        conf = self.run_dir / "nginx.conf"
        conf.write_text(nginx_conf(self.run_dir, self.port, [r.port for r in self.replicas]))
        with open(self.run_dir / "nginx.log", "ab") as log:
            self._nginx = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", str(self.run_dir), "-e", str(self.run_dir / "nginx-error.log")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.nginx_pid = self._nginx.pid
        deadline = time.monotonic() + 15
        while not http_ok(self.base_url + "/nginx-health"):
            if self._nginx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not start:\n{(self.run_dir / 'nginx-error.log').read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)

    def _tail(self, replica: Replica, lines: int = 40) -> str:
        path = self.run_dir / f"replica-{replica.index}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def nginx_conf(run_dir: Path, port: int, replica_ports: Sequence[int]) -> str:
    """nginx in the foreground, balancing over the replicas with the shipped proxy settings."""
    d = run_dir
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in replica_ports)
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format upstreams '$remote_addr "$request" $status upstream=$upstream_addr/$upstream_status $request_time';
    access_log {d}/nginx-access.log upstreams;
    client_body_temp_path {d}/nginx-body;
    proxy_temp_path {d}/nginx-proxy;
    fastcgi_temp_path {d}/nginx-fastcgi;
    uwsgi_temp_path {d}/nginx-uwsgi;
    scgi_temp_path {d}/nginx-scgi;
    client_body_buffer_size 1m;  # bodies stay in memory (the workers may not write to the run directory)
    upstream switchyard {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /nginx-health {{ return 200 "ok\\n"; }}
        location / {{
            proxy_pass http://switchyard;
            include {PROXY_CONF};
        }}
    }}
}}
"""


def _is_ours(pid: int) -> bool:
    """The pid still runs a process this tool starts (not a recycled number)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"gateway.cli" in cmdline or b"nginx" in cmdline


def _terminate(pid: int, proc: subprocess.Popen[bytes] | None, sig: int, timeout_s: float) -> int | None:
    """Signal one process and wait for it; its exit status when it is our child, else None."""
    if proc is None and not _is_ours(pid):
        return None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return proc.poll() if proc is not None else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return proc.returncode
        elif not Path(f"/proc/{pid}").exists():
            return None
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()
        return proc.returncode
    return None


def _ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names when it does not exist yet."""
    if not url.startswith(("postgres://", "postgresql")):
        return
    import asyncio

    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)

    async def create() -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", target.database):
                await conn.execute(f'CREATE DATABASE "{target.database}"')
                print(f"created database {target.database}")
        finally:
            await conn.close()

    asyncio.run(create())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local-cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "restart", "status", "down"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--dir", type=Path, default=Path(".cluster"), help="run directory (logs, nginx.conf, cluster.json)")
        if name == "up":
            cmd.add_argument("--config", type=Path, required=True)
            cmd.add_argument("--replicas", type=int, default=3)
            cmd.add_argument("--port", type=int, help="nginx's port (default: a free one)")
    args = parser.parse_args(argv)

    if args.command == "up":
        if (args.dir / STATE_FILE).exists() and any(
            r["pid"] for r in json.loads((args.dir / STATE_FILE).read_text())["replicas"]
        ):
            print(f"a cluster already runs from {args.dir}; stop it first: local-cluster down --dir {args.dir}", file=sys.stderr)
            return 1
        from gateway.config import load_config

        _ensure_database(load_config(args.config).database_url)
        cluster = LocalCluster(args.config, args.replicas, run_dir=args.dir, port=args.port).start()
        _print_status(cluster)
        return 0
    cluster = LocalCluster.attach(args.dir)
    if args.command == "status":
        _print_status(cluster)
    elif args.command == "restart":
        for replica in cluster.replicas:
            cluster.restart(replica.index)
            print(f"replica {replica.index} restarted on {replica.base_url} (pid {replica.pid})", flush=True)
    else:
        cluster.stop()
        print("stopped")
    return 0


def _print_status(cluster: LocalCluster) -> None:
    print(f"nginx      {cluster.base_url}  (pid {cluster.nginx_pid or '-'})")
    for replica in cluster.replicas:
        state = "ready" if replica.pid and http_ok(replica.base_url + "/readyz") else "down"
        print(f"replica {replica.index}  {replica.base_url}  (pid {replica.pid or '-'}, {state})")


if __name__ == "__main__":
    sys.exit(main())

"""``switchyard`` command line: serve, migrate, check, version (and the admin commands)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.config import ENV_REFERENCE, ConfigError, insecure_master_key, load_config

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from routing.types import DeploymentProfile

CONFIG_ENV = "SWITCHYARD_CONFIG"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def app_from_env() -> Any:
    """Factory for uvicorn's ``--workers N`` (it re-imports the app in each worker process).

    Each worker runs uvicorn's stock server; the drain starts on the worker's SIGTERM all the same.
    """
    import logging

    from gateway.app import create_app
    from gateway.drain import drain_on_signals

    logging.captureWarnings(True)  # warnings too go out in the configured format
    app = create_app(config_path=os.environ[CONFIG_ENV])
    drain_on_signals(app.state.drain)
    return app


def secrets_from_files(config_path: str | os.PathLike[str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Docker and Kubernetes secrets mounted as files: for each ``${NAME}`` the config refers to,
    when ``NAME`` is unset and ``NAME_FILE`` names a file, set ``NAME`` to the file's content (one
    trailing newline dropped). Returns the names set; raises ConfigError for an unreadable file."""
    env = os.environ if environ is None else environ
    try:
        text = Path(config_path).read_text(encoding="utf-8")
    except OSError:
        return []  # load_config reports it
    loaded: list[str] = []
    for name in dict.fromkeys(m.group(1) for m in ENV_REFERENCE.finditer(text)):
        path = env.get(f"{name}_FILE")
        if not path or env.get(name):
            continue
        try:
            value = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read the secret file: {exc.strerror}") from None
        env[name] = value.removesuffix("\n").removesuffix("\r")
        loaded.append(name)
    return loaded


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.revisions import verify_revisions

    try:
        secrets_from_files(args.config)
        config = load_config(args.config)
        verify_revisions(config, args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if insecure_master_key(config) and not _loopback(host) and not config.server.allow_dev_master_key:
        print(
            f"{args.config}: refusing to serve on {host} with the published development master key; set "
            "SWITCHYARD_MASTER_KEY (server.master_key), or server.allow_dev_master_key: true if that is meant",
            file=sys.stderr,
        )
        return 2
    workers = args.workers or config.server.workers
    if workers > 1 and not config.redis_url:
        # Each worker would enforce every budget and rate limit on its own (projects and virtual
        # keys alike): N times the limit.
        print(
            f"{args.config}: --workers {workers} needs redis_url so that budgets and rate limits are shared "
            "by the worker processes (or run one worker per process/container behind a load balancer)",
            file=sys.stderr,
        )
        return 2
    import logging
    import logging.config

    from gateway.logs import logging_config, remember_secrets

    # Set up only now that it will serve: a refusal above leaves the calling process's logging alone.
    remember_secrets(config)
    log_config = logging_config(config.logging, level=args.log_level, access_log=args.access_log)
    logging.config.dictConfig(log_config)
    logging.getLogger("switchyard").info(
        "switchyard %s serving on http://%s:%s (%d worker%s)", __version__, host, port, workers, "s" * (workers > 1)
    )
    log_level = args.log_level or config.logging.level
    if workers == 1:
        from gateway import server
        from gateway.app import create_app

        app = create_app(config_path=os.environ[CONFIG_ENV])
        return server.run(
            app, app.state.drain, host=host, port=port, log_level=log_level, access_log=args.access_log, log_config=log_config
        )
    import uvicorn

    metrics_dir = _shared_metrics_dir()
    try:
        uvicorn.run(
            "gateway.cli:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_config=log_config,  # applied again in every worker process
            log_level=log_level,
            access_log=args.access_log,
            # The drain ends what is left at drain_timeout_s; this is the backstop after it.
            timeout_graceful_shutdown=int(config.server.drain_timeout_s) + 6,
            lifespan="on",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _shared_metrics_dir() -> str | None:
    """A fresh directory for this run's worker metrics (prometheus_client's multiprocess mode), so
    a scrape of any worker adds up all of them; None when the operator set one (it is theirs)."""
    if os.environ.get(METRICS_DIR_ENV):
        return None
    directory = tempfile.mkdtemp(prefix="switchyard-metrics-")
    os.environ[METRICS_DIR_ENV] = directory  # inherited by the worker processes before they import prometheus_client
    return directory


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the ledger database's schema to the newest revision (run before a rolling deploy)."""
    try:
        secrets_from_files(args.config)
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    import asyncio

    from gateway.db.engine import Database

    async def migrate() -> tuple[str | None, str | None]:
        db = Database(config.database_url)
        try:
            before = await db.schema_revision()
            await db.migrate(args.revision)
            return before, await db.schema_revision()
        finally:
            await db.aclose()

    try:
        before, after = asyncio.run(migrate())
    except Exception as exc:  # noqa: BLE001 - a command line reports, never shows a stack trace
        print(f"{args.config}: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"database schema: {before or '(empty)'} -> {after}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.revisions import verify_revisions

    try:
        secrets_from_files(args.config)
        config = load_config(args.config)
        verify_revisions(config, args.config)  # pinned model files: sha256 checked here too
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    from gateway.runtime import Runtime, compile_policy

    router, profiles = compile_policy(config)
    if args.explain:
        from gateway.explain import explain_offline

        try:
            request = json.loads(Path(args.explain).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"{args.explain}: cannot read the request: {exc}", file=sys.stderr)
            return 1
        if not isinstance(request, dict):
            print(f"{args.explain}: the request must be a JSON object", file=sys.stderr)
            return 1
        configs = {d.name: d for d in config.enabled_deployments}
        runtime = Runtime(config=config, router=router, profiles=profiles, providers={}, deployment_configs=configs)
        print(json.dumps(explain_offline(runtime, request), indent=2))
        return 0
    disabled = [d.name for d in config.deployments if not d.is_enabled]
    print(f"{args.config}: OK")
    print(f"  deployments: {', '.join(profiles) or '-'}" + (f" (disabled: {', '.join(disabled)})" if disabled else ""))
    print(f"  routes: {', '.join(r.name for r in config.routes) or '-'}")
    print(f"  projects: {', '.join(p.name for p in config.projects) or '-'}")
    _print_governance(config, profiles)
    return 0


def _print_governance(config: GatewayConfig, profiles: Mapping[str, DeploymentProfile]) -> None:
    """Each project's ``requires`` and the enabled deployments that meet it (none is a warning)."""
    from routing.governance import governance_reasons, requires_summary

    for i, project in enumerate(config.projects):
        requires = project.requires
        if requires is None or requires.empty:
            continue
        meeting = [name for name, profile in profiles.items() if not governance_reasons(profile, requires)]
        print(f"  projects[{i}] {project.name} requires {requires_summary(requires)}: {', '.join(meeting) or 'NO deployment'}")
        if not meeting:
            print(
                f"warning: projects[{i}].requires: no enabled deployment meets it; every request from "
                "this project's keys will be refused (403 policy_violation)",
                file=sys.stderr,
            )


def cmd_version(args: argparse.Namespace) -> int:
    print(f"switchyard {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description="OpenAI-compatible model gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default="config.example.yaml")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers)")
    serve.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug"], help="default: logging.level in the config"
    )
    serve.add_argument("--access-log", action="store_true", help="also uvicorn's access line per HTTP request, on stdout")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="migrate the ledger database's schema (before a rolling deploy)")
    migrate.add_argument("--config", default="config.example.yaml")
    migrate.add_argument("--revision", default="head", help="Alembic revision to migrate to (default: head)")
    migrate.set_defaults(func=cmd_migrate)

    check = sub.add_parser("check", help="validate a config file offline")
    check.add_argument("config")
    check.add_argument("--explain", metavar="REQUEST.json", help="print the routing decision for a request body")
    check.set_defaults(func=cmd_check)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)

    from gateway.intake import add_intake_command

    add_intake_command(sub)

    try:
        from gateway.cli_admin import add_admin_commands
    except ImportError:
        pass
    else:
        add_admin_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

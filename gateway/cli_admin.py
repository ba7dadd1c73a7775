"""``switchyard keys …``, ``switchyard projects …``, ``switchyard usage`` and ``switchyard report``:
clients of a running gateway's admin API (``--url``, default ``$SWITCHYARD_URL`` or
http://127.0.0.1:4000; the key from ``--api-key`` / ``$SWITCHYARD_API_KEY`` (a finance or admin
key) or ``--master-key`` / ``$SWITCHYARD_MASTER_KEY``). Plain ``urllib``: no extra dependency.
``switchyard report --config FILE`` reads the config's database directly instead, and
``switchyard dev seed-ledger`` writes a realistic ledger into it.

    switchyard keys create --project web --name ci --budget-usd 25 --budget-period monthly --rpm 60
    switchyard keys create --project web --name finance-team --role finance [--projects web,shop]
    switchyard keys list --project web
    switchyard keys revoke <id>          switchyard keys rotate <id>
    switchyard usage --project web --since 2026-11-01 --group-by model --format csv
    switchyard report --since 2026-11-01 --until 2026-11-30 --format table|csv|json
    switchyard dev seed-ledger --config config.yaml --rows 1000000 --days 60 --projects 12
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.ledger.usage import render_report

DEFAULT_URL = "http://127.0.0.1:4000"


class AdminError(Exception):
    """The admin API answered with an error, or could not be reached."""


class AdminClient:
    """A tiny synchronous client of the admin API."""

    def __init__(self, url: str, master_key: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.master_key = master_key
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None) -> Any:
        url = self.url + path
        params = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.master_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace")[:500] or exc.reason
            raise AdminError(f"{exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"cannot reach the gateway at {self.url}: {reason}") from None


def _client(args: argparse.Namespace) -> AdminClient:
    key = (
        getattr(args, "api_key", None)
        or args.master_key
        or os.environ.get("SWITCHYARD_API_KEY", "")
        or os.environ.get("SWITCHYARD_MASTER_KEY", "")
    )
    if not key:
        raise AdminError("no key: pass --api-key (a finance or admin key) or --master-key, or set SWITCHYARD_API_KEY")
    return AdminClient(args.url, key)


def _limits_budget(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"limits": {k: v for k, v in (("rpm", args.rpm), ("tpm", args.tpm)) if v is not None}}
    if args.budget_usd is not None:
        body["budget"] = {"usd": args.budget_usd, "period": args.budget_period}
        if args.alert_thresholds:
            body["budget"]["alert_thresholds"] = [int(t) for t in _csv(args.alert_thresholds)]
    return body


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _run(handler: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return handler(args, _client(args)) or 0
        except AdminError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapped


# ---------------------------------------------------------------- handlers


def keys_create(args: argparse.Namespace, client: AdminClient) -> int:
    body = {"project": args.project, "name": args.name, "models": _csv(args.models), "tags": _csv(args.tags), "role": args.role}
    if args.projects:
        body["projects"] = _csv(args.projects)
    body |= _limits_budget(args)
    if args.expires_at:
        body["expires_at"] = args.expires_at
    created = client.request("POST", "/admin/keys", body)
    _print_json(created)
    print("Store the key now: it is not shown again.", file=sys.stderr)
    return 0


def keys_list(args: argparse.Namespace, client: AdminClient) -> int:
    keys = client.request("GET", "/admin/keys", query={"project": args.project})["data"]
    if args.format == "json":
        _print_json(keys)
        return 0
    rows = [["id", "prefix", "project", "name", "role", "budget", "rpm", "tpm", "status"]]
    for k in keys:
        budget = f"${k['budget']['usd']}/{k['budget']['period']}" if k.get("budget") else "-"
        status = "revoked" if k["revoked_at"] else ("active" if k["active"] else "expired")
        rows.append(
            [
                k["id"],
                k["prefix"] + "…",
                k["project"],
                k["name"],
                k.get("role", "app"),
                budget,
                str(k["limits"]["rpm"] or "-"),
                str(k["limits"]["tpm"] or "-"),
                status,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def keys_revoke(args: argparse.Namespace, client: AdminClient) -> int:
    _print_json(client.request("POST", f"/admin/keys/{urllib.parse.quote(args.id, safe='')}/revoke"))
    return 0


def keys_rotate(args: argparse.Namespace, client: AdminClient) -> int:
    _print_json(client.request("POST", f"/admin/keys/{urllib.parse.quote(args.id, safe='')}/rotate"))
    print("Store the new key now: it is not shown again; the old one no longer works.", file=sys.stderr)
    return 0


def projects_create(args: argparse.Namespace, client: AdminClient) -> int:
    body = {"name": args.name, "sensitivity_floor": args.sensitivity_floor} | _limits_budget(args)
    _print_json(client.request("POST", "/admin/projects", body))
    return 0


def projects_list(args: argparse.Namespace, client: AdminClient) -> int:
    _print_json(client.request("GET", "/admin/projects")["data"])
    return 0


def usage(args: argparse.Namespace, client: AdminClient) -> int:
    query = {
        "project": args.project,
        "key": args.key,
        "since": args.since,
        "until": args.until,
        "group_by": ",".join(_csv(args.group_by)),
    }
    report = client.request("GET", "/admin/usage", query=query)
    sys.stdout.write(render_report(report, args.format) + ("\n" if args.format == "json" else ""))
    return 0


# ---------------------------------------------------------------- argparse wiring


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL), help="gateway base URL")
    parser.add_argument("--api-key", default=None, help="a finance or admin key (default: $SWITCHYARD_API_KEY)")
    parser.add_argument("--master-key", default=None, help="default: $SWITCHYARD_MASTER_KEY")


def _budget_limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-usd", help="budget in USD (e.g. 25 or 0.50)")
    parser.add_argument("--budget-period", default="monthly", choices=["daily", "weekly", "monthly", "total"])
    parser.add_argument("--alert-thresholds", help="budget alert thresholds in percent, e.g. 50,80,100")
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")


def add_admin_commands(subparsers: Any) -> None:
    """Add ``keys``, ``projects`` and ``usage`` to the ``switchyard`` parser's subcommands."""
    keys = subparsers.add_parser("keys", help="issue, list, revoke and rotate API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    create = keys_sub.add_parser("create", help="issue a key (the secret is printed once)")
    create.add_argument("--project", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--models", help="comma-separated models/routes the key may use (default: all)")
    create.add_argument("--tags", help="comma-separated tags")
    create.add_argument("--expires-at", help="ISO 8601 time, e.g. 2027-01-01T00:00:00Z")
    create.add_argument(
        "--role",
        choices=["app", "finance", "admin"],
        default="app",
        help="app: model calls; finance: read-only reports and dashboard; admin: everything",
    )
    create.add_argument("--projects", help="finance keys: comma-separated projects the key may see (default: all)")
    _budget_limit_args(create)
    _common(create)
    create.set_defaults(func=_run(keys_create))

    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--project")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    _common(listing)
    listing.set_defaults(func=_run(keys_list))

    for name, handler, text in (("revoke", keys_revoke, "revoke a key"), ("rotate", keys_rotate, "give a key a new secret")):
        cmd = keys_sub.add_parser(name, help=text)
        cmd.add_argument("id")
        _common(cmd)
        cmd.set_defaults(func=_run(handler))

    projects = subparsers.add_parser("projects", help="create and list projects")
    projects_sub = projects.add_subparsers(dest="projects_command", required=True)
    pcreate = projects_sub.add_parser("create", help="create a project (config-file projects are synced at start)")
    pcreate.add_argument("--name", required=True)
    pcreate.add_argument("--sensitivity-floor", default="public", choices=["public", "internal", "confidential", "restricted"])
    _budget_limit_args(pcreate)
    _common(pcreate)
    pcreate.set_defaults(func=_run(projects_create))
    plist = projects_sub.add_parser("list", help="list projects")
    _common(plist)
    plist.set_defaults(func=_run(projects_list))

    report = subparsers.add_parser("usage", help="usage and spend from the ledger")
    report.add_argument("--project")
    report.add_argument("--key", help="key id")
    report.add_argument("--since", help="date or ISO time (inclusive)")
    report.add_argument("--until", help="date (inclusive) or ISO time (exclusive)")
    report.add_argument(
        "--group-by", default="", help="comma-separated: day,project,key,model,route,deployment,provider,task,sensitivity"
    )
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _common(report)
    report.set_defaults(func=_run(usage))

    from gateway.cli_reports import add_report_commands
    from gateway.cli_simulate import add_simulate_command

    add_report_commands(subparsers, _common)
    add_simulate_command(subparsers, _common)

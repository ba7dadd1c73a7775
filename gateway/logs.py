"""Logging for the served gateway: one format per stream, and no secret in any line.

* stdout carries the request log (one line per request, ``switchyard.requests``) and, with
  ``serve --access-log``, uvicorn's access lines; stderr carries everything else. Both streams use
  ``logging.format`` (``json``: one object per line; ``text``: a timestamped line).
* Every line except the request log's own fields goes through :func:`scrub` before it is
  written: the secrets of every config this process loaded (master key, deployment keys and
  header values, database and Redis passwords), bearer tokens, ``sk-`` keys, passwords in URLs,
  and whatever the built-in sensitivity detectors find (cards, keys of every issuer's format, ...).
  That covers exception text from drivers and upstreams, which may quote what they were given.
* The request log is written from structured fields that never hold a prompt, a completion or a
  key; with ``logging.include_bodies`` it also carries the request and the answer, masked.
* Third-party loggers that would log request bodies or SQL parameters at debug level (litellm,
  httpx, httpcore, openai, sqlalchemy, aiosqlite) stay at WARNING whatever the level.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, LoggingConfig
    from routing.detectors import DetectorSet

REQUEST_LOGGER = "switchyard.requests"
QUIET_LIBRARIES = (
    "LiteLLM",
    "LiteLLM Proxy",
    "LiteLLM Router",
    "litellm",
    "httpx",
    "httpcore",
    "openai",
    "sqlalchemy",
    "sqlalchemy.engine",
    "aiosqlite",
    "asyncio",
    "hpack",
    "urllib3",
    "multipart",
)
_MIN_SECRET = 8  # shorter "secrets" would mask ordinary words

_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), "sk-***"),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|x-api-key|authorization|password|passwd|secret|token)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s\"',;}]{4,}"
        ),
        r"\1***",
    ),
    (re.compile(r"(://[^/\s:@]*:)[^/\s@]+@"), r"\1***@"),
)


class _Secrets:
    """Exact secrets from every config this process loaded, as one alternation (longest first)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: set[str]) -> None:
        fresh = {v for v in values if len(v) >= _MIN_SECRET} - self._values
        if not fresh:
            return
        with self._lock:
            self._values |= fresh
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def sub(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub("***", text)


SECRETS = _Secrets()
_detectors: DetectorSet | None = None


def remember_secrets(config: GatewayConfig) -> None:
    """Add ``config``'s secrets to what every log line is scrubbed of (old ones stay: a rotated key
    can still turn up in a late message): the master key, deployment keys, header values and
    litellm credentials, the alert webhook and its signing secret, the dashboard's session secret,
    passwords in database, Redis and collector URLs, and a collector's headers."""
    values = {config.server.master_key.get_secret_value()}
    for deployment in config.deployments:
        if deployment.api_key is not None:
            values.add(deployment.api_key.get_secret_value())
        values.update(_secret_params(deployment.headers))
        values.update(_secret_params(deployment.litellm_params))
    for secret in (config.alerts.secret, config.dashboard.session_secret):
        if secret is not None:
            values.add(secret.get_secret_value())
    if config.alerts.webhook_url:  # a webhook's URL is often its credential (Slack, Teams)
        values.add(config.alerts.webhook_url)
    for url in (config.database_url, config.redis_url, config.telemetry.otlp_endpoint, config.alerts.webhook_url):
        password = _url_password(url)
        if password:
            values.add(password)
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):  # a collector's API key
        for pair in os.environ.get(variable, "").split(","):
            values.add(pair.partition("=")[2].strip())
    SECRETS.add(values)


_SECRET_NAMES = ("auth", "key", "secret", "token", "password", "credential", "cookie", "signature")


def _secret_params(params: dict[str, Any]) -> set[str]:
    """The values of headers or parameters whose names say they hold a credential (an
    ``x-title: my-app`` header is not a secret, and masking it would mangle every line)."""
    return {v for k, v in params.items() if isinstance(v, str) and any(h in k.lower() for h in _SECRET_NAMES)}


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _builtin_detectors() -> DetectorSet:
    global _detectors  # compiled once per process, on the first line that needs it
    if _detectors is None:
        from routing.detectors import compile_detectors
        from routing.spec import SensitivityPolicy

        _detectors = compile_detectors(SensitivityPolicy())
    return _detectors


def scrub(text: str, detectors: DetectorSet | None = None) -> str:
    """``text`` without known secrets, credential-shaped strings or anything the detectors find."""
    if not text:
        return text
    from routing.detectors.masking import mask

    text = SECRETS.sub(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return mask(text, detectors or _builtin_detectors())


# ------------------------------------------------------------------------------ formatters


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds; the part up to the second is formatted once a second."""
    global _second  # a one-entry cache (one tuple, swapped atomically)
    whole = int(created)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((created - whole) * 1000):03d}Z"


_RECORD = logging.LogRecord(REQUEST_LOGGER, logging.INFO, "", 0, "request", (), None).__dict__.copy()
_RECORD.update(filename="", module="", funcName=None, threadName=None, processName=None, taskName=None)


def log_request(logger: logging.Logger, fields: dict[str, Any]) -> None:
    """One request-log line (the caller checked ``isEnabledFor(INFO)``).

    The record is a copy of a template with the time and the fields filled in: ``Logger.info``
    would walk the stack for a caller and ``LogRecord`` would look up the thread and the process
    for every line, a third of the line's cost, for attributes no request line shows."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(_RECORD)
    now = time.time_ns()
    attributes["created"] = now / 1e9
    attributes["msecs"] = (now % 1_000_000_000) // 1_000_000
    attributes["relativeCreated"] = (now / 1e9 - getattr(logging, "_startTime", 0.0)) * 1000
    attributes["name"] = logger.name
    attributes["request"] = fields
    attributes["process"] = os.getpid()
    attributes["thread"] = threading.get_ident()
    logger.handle(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (scrubbed), request fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] | None = getattr(record, "request", None)
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process or os.getpid(),
        }
        if fields is not None:  # the request log: structured, nothing free-text left to scrub
            line["msg"] = record.msg
            line.update(fields)
        else:
            line["msg"] = scrub(record.getMessage())
            if record.exc_info:
                line["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
                line["exc"] = scrub(self.formatException(record.exc_info))
            elif record.exc_text:
                line["exc"] = scrub(record.exc_text)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``; request lines as ``key=value`` pairs."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_timestamp(record.created)} {record.levelname} {record.name}:"
        fields: dict[str, Any] | None = getattr(record, "request", None)
        if fields is not None:
            return head + " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None)
        text = f"{head} {scrub(record.getMessage())}"
        if record.exc_info:
            text += "\n" + scrub(self.formatException(record.exc_info))
        return text


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in '"=' for c in value) else orjson.dumps(value).decode()
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


# ------------------------------------------------------------------------------ set-up


def logging_config(settings: LoggingConfig, *, level: str | None = None, access_log: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the whole process, uvicorn's loggers included (``serve``
    hands it to uvicorn, which applies it in every worker process)."""
    chosen = (level or settings.level).upper()
    formatter = {"()": f"{__name__}.{'JsonFormatter' if settings.format == 'json' else 'TextFormatter'}"}
    loggers: dict[str, Any] = {
        "uvicorn": {"handlers": ["stderr"], "level": chosen, "propagate": False},
        "uvicorn.error": {"level": chosen},
        "uvicorn.access": {"handlers": ["stdout"] if access_log else [], "level": "INFO", "propagate": False},
        REQUEST_LOGGER: {"handlers": ["stdout"], "level": "INFO" if settings.requests else "CRITICAL", "propagate": False},
    }
    for name in QUIET_LIBRARIES:
        loggers[name] = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stdout"},
            "stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"},
        },
        "loggers": loggers,
        "root": {"handlers": ["stderr"], "level": chosen},
    }


def configure_logging(settings: LoggingConfig | None = None, level: str | None = None, *, access_log: bool = False) -> None:
    """Apply :func:`logging_config` to this process."""
    import logging.config

    from gateway.config import LoggingConfig

    logging.config.dictConfig(logging_config(settings or LoggingConfig(), level=level, access_log=access_log))

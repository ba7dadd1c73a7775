"""Every error the gateway can answer with, and how each is shown to an OpenAI client.

The tree::

    GatewayError                      status, OpenAI ``type``, ``code``, ``param``
    ├── InvalidRequest                400 invalid_request_error
    │   ├── ContextLengthExceeded     400 code=context_length_exceeded
    │   ├── PayloadTooLarge           413 code=request_too_large
    │   └── RequestTimeout            408 code=request_timeout (the body came too slowly, or short)
    ├── AuthenticationFailed          401 invalid_request_error / invalid_api_key
    ├── PermissionDenied              403 permission_error (policy blocks a pinned model; a role)
    ├── ModelNotFound                 404 invalid_request_error / model_not_found
    ├── RateLimited                   429 rate_limit_exceeded (carries Retry-After)
    │   └── BudgetExceeded            429 code=budget_exceeded
    ├── NoPermittedDeployment         503 code=no_permitted_deployment
    ├── AdmissionUnavailable          503 code=admission_unavailable (Redis down: fail closed)
    ├── AuthUnavailable               503 code=auth_unavailable (key store unreachable, key not cached)
    ├── ShuttingDown                  503 code=server_shutting_down (the drain deadline ended it)
    └── UpstreamError                 a backend failed; the gateway may fall back
        ├── UpstreamStatus            the backend answered 4xx/5xx (429 -> 429, 5xx -> 502)
        ├── UpstreamTimeout           504 timeout
        ├── UpstreamConnectionError   502 upstream_connection_error
        ├── UpstreamProtocolError     502 the backend's answer was not what OpenAI format promises
        └── AllDeploymentsFailed      every candidate of the plan failed; holds each attempt

One handler (``gateway.app``) serialises all of them with :func:`error_body`; anything else
becomes a 500 ``internal_error`` with a request id, never a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson


class GatewayError(Exception):
    """Base of every error that is answered to a client in OpenAI's error shape."""

    status: int = 500
    type: str = "api_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(GatewayError):
    """The request cannot be served as sent (bad JSON, missing or wrong field)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    """The prompt plus ``max_tokens`` does not fit any permitted deployment's context."""

    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than ``server.max_body_bytes``."""

    status = 413
    code = "request_too_large"


class RequestTimeout(InvalidRequest):
    """The request body did not arrive in time (a stalled client, or fewer bytes than declared)."""

    status = 408
    code = "request_timeout"


class AuthenticationFailed(GatewayError):
    """Missing, unknown, revoked or expired API key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """Policy forbids this request (e.g. a pinned hosted model for restricted data)."""

    status = 403
    type = "permission_error"
    code = "policy_violation"


class ModelNotFound(GatewayError):
    """The requested model is neither a route nor a deployment."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimited(GatewayError):
    """A rate limit (RPM/TPM) was hit; ``Retry-After`` says when to come back.

    ``subject_key`` and ``stays_for_s`` are set when the refusal cannot clear for a while
    whatever the next request looks like (its RPM window is full, its budget is spent), so the
    gateway may refuse that subject again without asking the shared store.
    """

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    subject_key: str | None = None
    stays_for_s: float | None = None


class BudgetExceeded(RateLimited):
    """The key's or project's budget for the current period is spent (``unspent_usd`` is what is
    left of it once open reservations settle)."""

    unspent_usd: Decimal | None = None

    type = "insufficient_quota"
    code = "budget_exceeded"


class NoPermittedDeployment(GatewayError):
    """No deployment the policy allows for this request is available."""

    status = 503
    type = "service_unavailable_error"
    code = "no_permitted_deployment"


class AdmissionUnavailable(GatewayError):
    """Budgets and rate limits cannot be checked (the shared admission store is unreachable)."""

    status = 503
    type = "service_unavailable_error"
    code = "admission_unavailable"


class AuthUnavailable(GatewayError):
    """The key store (database) cannot be reached and the key is not in the recent cache."""

    status = 503
    type = "service_unavailable_error"
    code = "auth_unavailable"


class ShuttingDown(GatewayError):
    """The replica is shutting down and ended the request before it finished (retry it)."""

    status = 503
    type = "service_unavailable_error"
    code = "server_shutting_down"


class UpstreamError(GatewayError):
    """A backend failed. ``retryable`` says whether another attempt or candidate may help;
    ``backend_fault`` whether it says anything about the backend's health (circuit breakers
    count transport failures and 5xx, never a 429 or the caller's own 4xx)."""

    status = 502
    type = "api_error"
    code = "upstream_error"
    retryable: bool = True
    backend_fault: bool = True

    def __init__(self, message: str, *, deployment: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.deployment = deployment


class UpstreamStatus(UpstreamError):
    """The backend answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        deployment: str | None = None,
        upstream_type: str | None = None,
        upstream_code: str | None = None,
        upstream_param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        status, type_, code = _map_upstream_status(upstream_status, upstream_type, upstream_code, message)
        # The parameter the backend refused is the client's own: keep naming it.
        super().__init__(message, deployment=deployment, code=code, status=status, param=upstream_param)
        self.type = type_
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        # 429, 5xx and context-length errors can succeed elsewhere; other 4xx are the caller's fault.
        # The backend refusing the gateway's own credentials (401/403) is that deployment's fault
        # too: another may serve, and its breaker should take it out of plans.
        self.retryable = upstream_status in (401, 403, 429) or upstream_status >= 500 or code == "context_length_exceeded"
        self.backend_fault = upstream_status >= 500 or upstream_status in (401, 403)
        if retry_after is not None and status == 429:
            self.headers["retry-after"] = str(max(1, int(retry_after + 0.999)))

    @property
    def is_context_length(self) -> bool:
        return self.code == "context_length_exceeded"


def _map_upstream_status(
    upstream: int, upstream_type: str | None, upstream_code: str | None, message: str
) -> tuple[int, str, str]:
    lowered = message.lower()
    if upstream_code == "context_length_exceeded" or "context length" in lowered or "maximum context" in lowered:
        return 400, "invalid_request_error", "context_length_exceeded"
    if upstream == 429:
        return 429, "rate_limit_error", "rate_limit_exceeded"
    if upstream in (400, 404, 409, 413, 422):
        return (
            (404 if upstream == 404 else 400),
            upstream_type or "invalid_request_error",
            upstream_code or "upstream_bad_request",
        )
    if upstream in (401, 403):
        # The gateway's own credentials for the backend are wrong: not the caller's fault.
        return 502, "api_error", "upstream_auth_error"
    return 502, "api_error", "upstream_error"


class UpstreamTimeout(UpstreamError):
    """The backend did not connect, answer or send the first byte in time."""

    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamConnectionError(UpstreamError):
    """The backend could not be reached."""

    code = "upstream_connection_error"


class UpstreamProtocolError(UpstreamError):
    """The backend's answer broke the OpenAI wire format (bad JSON, stream cut short)."""

    code = "upstream_protocol_error"


@dataclass
class Attempt:
    """One try of one deployment, as recorded by the executor."""

    deployment: str
    error: GatewayError
    elapsed_ms: float = 0.0


class AllDeploymentsFailed(GatewayError):
    """Every permitted candidate failed. Shown as the most telling attempt's status."""

    def __init__(self, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        last = _most_telling(attempts)
        summary = "; ".join(a.error.message for a in attempts)
        super().__init__(f"All permitted deployments failed ({summary})", code=last.code, status=last.status, param=last.param)
        self.type = last.type
        self.headers = dict(last.headers)


def _most_telling(attempts: list[Attempt]) -> GatewayError:
    # A 4xx from the caller's own request (e.g. context length) says more than a generic 5xx.
    for attempt in attempts:
        if 400 <= attempt.error.status < 500 and attempt.error.status != 429:
            return attempt.error
    return attempts[-1].error


def error_body(error: GatewayError) -> bytes:
    return orjson.dumps(error.to_dict())


def internal_error_body(request_id: str) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": f"The gateway hit an internal error. Quote request id {request_id} when reporting it.",
                "type": "api_error",
                "param": None,
                "code": "internal_error",
            }
        }
    )


__all__ = [
    "AdmissionUnavailable",
    "AllDeploymentsFailed",
    "Attempt",
    "AuthUnavailable",
    "AuthenticationFailed",
    "BudgetExceeded",
    "ContextLengthExceeded",
    "GatewayError",
    "InvalidRequest",
    "ModelNotFound",
    "NoPermittedDeployment",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "ShuttingDown",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatus",
    "UpstreamTimeout",
    "error_body",
    "internal_error_body",
]

"""The one table from a routing refusal to the HTTP error a client sees.

``POST /v1/route/explain`` reports a refusal with the same status and code the real call would
answer with, because both go through :func:`refusal_for`.

A plan with no candidate is told apart by why each one was excluded: a prompt too long for every
window is the caller's 400 ``context_length_exceeded``; a need no candidate can meet (an image to
text-only models, embeddings on a chat model) is the caller's 400; a candidate out of service
behind an open breaker makes it a 503 that may be retried; policy alone (private data and only
hosted candidates) is a 503 that says so and tells SDKs not to retry, since retrying cannot help.
A project whose ``requires`` (approved use, region) left no candidate gets a 403
``policy_violation``, the code of a pinned model the policy blocks: the project is not permitted
any deployment of this model, and retrying cannot change that. A deployment out on governance is
out whatever its health, so its being unhealthy too does not make the refusal retryable.
"""

from __future__ import annotations

from core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoPermittedDeployment,
    PayloadTooLarge,
    PermissionDenied,
)
from routing.errors import (
    InvalidHint,
    NoCandidates,
    PolicyBlocked,
    RequestTooLarge,
    RoutingError,
    UnknownModel,
    UnsupportedEndpoint,
)
from routing.governance import REASON_PREFIXES

NO_RETRY = {"x-should-retry": "false"}

# what an exclusion reason starts with -> what kind of obstacle it is
_REASON_KINDS = (
    ("context window", "context"),
    ("request needs ", "capability"),
    ("does not support ", "capability"),
    ("unhealthy", "health"),
    *((prefix, "governance") for prefix in REASON_PREFIXES),
)


def _kinds(excluded: NoCandidates) -> set[str]:
    kinds: set[str] = set()
    for exclusion in excluded.excluded:
        found = {
            next((kind for prefix, kind in _REASON_KINDS if reason.startswith(prefix)), "policy")
            for reason in exclusion.reason.split("; ")
        }
        if "governance" in found:
            found.discard("health")  # excluded for good, healthy or not
        kinds |= found
    return kinds


def refusal_for(exc: RoutingError | InvalidHint) -> GatewayError:
    """The client-facing error for a refusal of the router."""
    if isinstance(exc, InvalidHint):
        return InvalidRequest(str(exc), code="invalid_hint", param=exc.param)
    if isinstance(exc, UnknownModel):
        return ModelNotFound(str(exc), param="model")
    if isinstance(exc, UnsupportedEndpoint):
        return InvalidRequest(str(exc), param="model", code="unsupported_endpoint")
    if isinstance(exc, PolicyBlocked):
        return PermissionDenied(str(exc), code="policy_violation", headers=NO_RETRY)
    if isinstance(exc, NoCandidates):
        kinds = _kinds(exc)
        if kinds == {"context"}:
            return ContextLengthExceeded(str(exc), param="messages")
        if kinds and kinds <= {"context", "capability"}:
            return InvalidRequest(str(exc), param="model", code="model_not_supported")
        if "health" in kinds:
            return NoPermittedDeployment(str(exc), headers={"retry-after": "5"})
        if "governance" in kinds:
            return PermissionDenied(str(exc), code="policy_violation", headers=NO_RETRY)
        return NoPermittedDeployment(str(exc), headers=NO_RETRY)
    if isinstance(exc, RequestTooLarge):  # more text than sensitivity.max_scan_bytes, and over_limit: refuse
        return PayloadTooLarge(str(exc), code=exc.code)
    status = getattr(exc, "status", None) or 400
    return GatewayError(str(exc), status=status, code=getattr(exc, "code", None) or "routing_refused")


def refusal_summary(exc: RoutingError | InvalidHint) -> dict[str, object]:
    """What explain shows of a refusal: exactly what the real call would answer."""
    error = refusal_for(exc)
    return {"status": error.status, "type": error.type, "code": error.code, "param": error.param, "message": error.message}

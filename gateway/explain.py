"""``POST /v1/route/explain`` and ``switchyard check --explain``: the routing decision, no backend call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.config import GatewayConfig
from gateway.proxy import CHECKS, json_response, routing_request
from gateway.requests import read_json_body
from routing.router import Router
from routing.types import RoutingRequest, Sensitivity

router = APIRouter()


def _endpoint_of(body: dict[str, Any]) -> str:
    if "input" in body and "messages" not in body:
        return "embeddings"
    if "prompt" in body and "messages" not in body:
        return "completions"
    return "chat"




@router.post("/v1/route/explain", tags=["routing"])
async def explain(request: Request) -> Response:
    """Signals, matched rule, ranked candidates and every exclusion with its reason. Calls no backend."""
    state = request.app.state.gateway
    caller = await state.authenticate(request)
    runtime = state.runtime
    body = await read_json_body(request, runtime.config.server.max_body_bytes)
    endpoint = _endpoint_of(body)
    CHECKS[endpoint](body)
    req = routing_request(runtime, request, caller, body, endpoint)  # type: ignore[arg-type]
    return json_response(runtime.router.explain(req, state.breakers.snapshot()))


def explain_offline(config: GatewayConfig, router: Router, body: dict[str, Any], project: str | None = None) -> dict[str, Any]:
    """The decision for ``body`` as the gateway would make it with every deployment healthy."""
    name = project or (config.projects[0].name if config.projects else "default")
    proj = next((p for p in config.projects if p.name == name), None)
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    hints = {k: str(metadata[k]) for k in ("sensitivity", "task") if k in metadata}
    req = RoutingRequest(
        model=str(body.get("model", "")),
        endpoint=_endpoint_of(body),  # type: ignore[arg-type]
        body=body,
        hints=hints,
        project=name,
        project_floor=Sensitivity.parse(proj.sensitivity_floor) if proj else Sensitivity.PUBLIC,
    )
    return router.explain(req, {})

"""``Router.explain``: a JSON-ready account of every decision, refusals included."""

from __future__ import annotations

import json

from routing.policy import INVARIANT
from tests.routing.factories import chat, route, router

CARD = "4111 1111 1111 1111"
KEEP_HOME = {"name": "keep-home", "when": {"sensitivity": ["restricted"]}, "allow": {"locality": ["self_hosted"]}}


def test_explain_reports_signals_rule_candidates_and_exclusions() -> None:
    report = router([route(rules=[KEEP_HOME])]).explain(
        chat("auto", f"Summarize: card {CARD}, bob@example.com"), {"vllm-8b": False}
    )
    json.dumps(report)  # JSON-ready
    assert report["decision"] == "planned" and report["error"] is None
    assert (report["route"], report["rule"], report["objective"], report["rerouted"]) == ("auto", "keep-home", "cheapest", False)
    signals = report["signals"]
    assert signals["sensitivity"] == "restricted" and signals["task"] == "summarize"
    assert signals["sensitivity_sources"] == ["detector:credit_card"]
    assert {d["entity"]: (d["count"], d["level"]) for d in signals["detections"]} == {
        "credit_card": (1, "restricted"),
        "email": (1, "confidential"),
    }
    assert [(c["rank"], c["deployment"], c["locality"]) for c in report["candidates"]] == [(1, "local-small", "self_hosted")]
    assert report["candidates"][0]["estimated_cost_usd"] > 0 and report["candidates"][0]["reason"]
    excluded = {e["deployment"]: e["reason"] for e in report["excluded"]}
    assert excluded["vllm-8b"] == "unhealthy" and INVARIANT in excluded["gpt-mini"]
    assert CARD not in json.dumps(report) and "bob@example.com" not in json.dumps(report)


def test_explain_reports_a_refusal_instead_of_raising() -> None:
    report = router([route(rules=[KEEP_HOME])]).explain(chat("auto", f"card {CARD}"), {"local-small": False, "vllm-8b": False})
    assert report["decision"] == "refused" and report["candidates"] == []
    assert report["error"]["type"] == "NoCandidates" and "keep-home" in report["error"]["message"]
    assert len(report["excluded"]) == 4 and report["signals"]["sensitivity"] == "restricted"


def test_explain_reports_a_block_and_a_reroute() -> None:
    blocked = router([route(rules=[KEEP_HOME], on_violation="block")]).explain(chat("gpt-mini", f"card {CARD}"), {})
    assert blocked["error"]["type"] == "PolicyBlocked" and blocked["rule"] == "keep-home"
    rerouted = router([route(rules=[KEEP_HOME])]).explain(chat("gpt-mini", f"card {CARD}"), {})
    assert rerouted["rerouted"] and rerouted["notes"] == ["'gpt-mini' is not permitted; rerouted over route 'auto'"]


def test_explain_reports_unknown_models_and_invalid_hints() -> None:
    unknown = router().explain(chat("nope"), {})
    assert unknown["error"]["type"] == "UnknownModel" and unknown["signals"] is None
    bad_hint = router().explain(chat("auto", hints={"sensitivity": "secret"}), {})
    assert bad_hint["error"]["type"] == "InvalidHint" and bad_hint["route"] == "auto"

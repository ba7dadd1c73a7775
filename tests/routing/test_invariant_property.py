"""Property: a request carrying a credential, card or IBAN -- in any message position, under any
backend health and any rules an admin might write -- is never planned onto a hosted deployment."""

from __future__ import annotations

import base64
import json
import random
import string

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from routing.detectors.checks import IBAN_LENGTHS
from routing.errors import NoCandidates, PolicyBlocked, UnsupportedEndpoint
from routing.router import Router
from routing.spec import Route, RoutingDefaults, SensitivityPolicy
from routing.types import RoutingRequest, Sensitivity
from tests.routing.factories import catalogue, deployment, make_iban

DEPLOYMENTS = [
    *catalogue(),
    # the most attractive deployment by every objective -- and hosted
    deployment(
        "hosted-free",
        "hosted",
        capabilities=("chat", "completions", "embeddings", "tools", "vision", "json_schema"),
        context_window=1_000_000,
        quality=5,
        latency_ms=1,
    ),
]
NAMES = [d.name for d in DEPLOYMENTS]
HOSTED = {d.name for d in DEPLOYMENTS if d.locality == "hosted"}
ALNUM = string.ascii_letters + string.digits
WORDS = st.lists(
    st.sampled_from(["please", "check", "the", "account", "for", "Bob", "and", "reply", "quickly", "notes:", "ok"]), max_size=6
).map(" ".join)

# ---- planted secrets, each valid by construction


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from([("4", 16), ("4", 13), ("51", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16)])
    )
    body = prefix + "".join(
        draw(st.lists(st.sampled_from(string.digits), min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1))
    )
    for check in string.digits:
        digits = body + check
        total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d for i, d in enumerate(int(c) for c in reversed(digits)))
        if total % 10 == 0:
            break
    separator = draw(st.sampled_from(["", " ", "-"]))
    if separator and length == 16:
        return separator.join(digits[i : i + 4] for i in range(0, 16, 4))
    return digits


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    bban = "".join(
        draw(st.lists(st.sampled_from(string.digits), min_size=IBAN_LENGTHS[country] - 4, max_size=IBAN_LENGTHS[country] - 4))
    )
    iban = make_iban(country, bban)
    if draw(st.booleans()):
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban.lower() if draw(st.booleans()) else iban


def random_key(size: int, alphabet: str = ALNUM) -> st.SearchStrategy[str]:
    """A key as issuers make them: uniformly random characters (drawn from a seed, so shrinking
    cannot turn it into "000...0a", which no issuer would hand out), with a digit and a letter."""

    def make(seed: int) -> str:
        rng = random.Random(seed)
        return rng.choice(string.digits) + "".join(rng.choice(alphabet) for _ in range(size)) + rng.choice(string.ascii_letters)

    return st.integers(0, 2**32).map(make)


def jwt(alg: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).rstrip(b"=").decode()
    return f"{header}.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


CREDENTIALS = st.one_of(
    random_key(46).map(lambda k: "sk-" + k),
    random_key(60, ALNUM + "_-").map(lambda k: "sk-proj-" + k),
    random_key(90, ALNUM + "_-").map(lambda k: "sk-ant-api03-" + k),
    st.tuples(st.sampled_from(["AKIA", "ASIA"]), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16)).map(
        "".join
    ),
    random_key(34).map(lambda k: "ghp_" + k),
    random_key(22).map(lambda k: "sk_live_" + k),
    st.integers(10**11, 10**12 - 1).map(lambda n: f"xoxb-{n}-{n + 7}-AbCdEfGhIjKlMnOp"),
    st.sampled_from(["HS256", "RS256", "none"]).map(jwt),
    random_key(10).map(lambda p: f"postgres://svc:{p}!@db.internal:5432/app"),
    st.just(
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Z1BjP5CEWmRr500P\n-----END RSA PRIVATE KEY-----"
    ),
)
SECRETS = st.one_of(cards(), ibans(), CREDENTIALS)

# ---- where in the request the secret goes


def placed(secret_text: str, position: str) -> tuple[str, dict]:
    """(endpoint, body) with ``secret_text`` in ``position``."""
    hello = {"role": "user", "content": "hello"}
    messages = {
        "system": [{"role": "system", "content": secret_text}, hello],
        "user": [{"role": "user", "content": secret_text}],
        "assistant": [hello, {"role": "assistant", "content": secret_text}, hello],
        "content_part": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    {"type": "text", "text": secret_text},
                ],
            }
        ],
        "tool_arguments": [
            hello,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": json.dumps({"value": secret_text})},
                    },
                ],
            },
        ],
        "tool_result": [hello, {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"result": secret_text})}],
        "function_call": [
            hello,
            {"role": "assistant", "function_call": {"name": "f", "arguments": json.dumps({"v": secret_text})}},
        ],
    }
    if position == "prompt":
        return "completions", {"prompt": ["intro", secret_text]}
    if position == "input":
        return "embeddings", {"input": secret_text}
    return "chat", {"messages": messages[position]}


POSITIONS = st.sampled_from(
    ["system", "user", "assistant", "content_part", "tool_arguments", "tool_result", "function_call", "prompt", "input"]
)

# ---- whatever an admin might write


def name_lists(min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(NAMES), min_size=min_size, max_size=4, unique=True)


FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "locality": st.sampled_from([["hosted"], ["self_hosted"], ["hosted", "self_hosted"]]),
        "deployments": name_lists(1),
        "capabilities": st.lists(st.sampled_from(["chat", "tools", "vision"]), max_size=2, unique=True),
        "max_price_per_mtok": st.sampled_from([0.0, 1.0, 100.0]),
    },
)
WHEN = st.fixed_dictionaries(
    {},
    optional={
        "sensitivity": st.lists(
            st.sampled_from(["public", "internal", "confidential", "restricted"]), min_size=1, max_size=4, unique=True
        ),
        "task": st.lists(st.sampled_from(["chat", "code", "extract", "embed", "tool_use"]), min_size=1, max_size=3, unique=True),
        "model": st.lists(st.sampled_from(["auto", *NAMES]), min_size=1, max_size=3, unique=True),
    },
)
RULES = st.lists(
    st.fixed_dictionaries(
        {"when": WHEN},
        optional={
            "allow": FILTERS,
            "deny": FILTERS,
            "prefer": name_lists(),
            "objective": st.sampled_from(["cheapest", "fastest", "best"]),
        },
    ),
    max_size=4,
)
ROUTES = st.tuples(
    name_lists(1),
    RULES,
    st.sampled_from(["cheapest", "fastest", "best"]),
    st.sampled_from(["reroute", "block"]),
    st.one_of(st.none(), name_lists()),
).map(
    lambda t: Route.model_validate(
        {
            "name": "auto",
            "candidates": t[0],
            "objective": t[2],
            "on_violation": t[3],
            "fallbacks": [n for n in t[4] if n in t[0]] if t[4] is not None else None,
            "rules": [
                {**rule, "name": f"rule-{i}", "prefer": [p for p in rule.get("prefer", []) if p in t[0]]}
                for i, rule in enumerate(t[1])
            ],
        }
    )
)
HEALTH = st.dictionaries(st.sampled_from(NAMES), st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=SECRETS,
    before=WORDS,
    after=WORDS,
    position=POSITIONS,
    route=ROUTES,
    health=HEALTH,
    model=st.sampled_from(["auto", *NAMES]),
    lowering_hint=st.sampled_from([{}, {"sensitivity": "public"}]),
)
def test_planted_secrets_never_reach_a_hosted_deployment(
    secret: str, before: str, after: str, position: str, route: Route, health: dict, model: str, lowering_hint: dict
) -> None:
    endpoint, body = placed(f"{before} {secret} {after}", position)
    body["metadata"] = {"x-switchyard-sensitivity": "public"}  # a caller trying to lower the level
    router = Router([route], DEPLOYMENTS, SensitivityPolicy(), RoutingDefaults())
    request = RoutingRequest(model=model, endpoint=endpoint, body=body, hints=lowering_hint)  # type: ignore[arg-type]
    decision = router.decide(request, health)
    assert decision.view is not None
    assert decision.view.signals.sensitivity == Sensitivity.RESTRICTED, (secret, decision.view.signals)
    event(type(decision.error).__name__ if decision.error else "planned")
    if decision.error is not None:
        assert isinstance(decision.error, (NoCandidates, PolicyBlocked, UnsupportedEndpoint))
        return
    plan = decision.plan()
    assert plan.candidates, "a plan always has a candidate"
    assert not HOSTED & set(plan.deployments), (plan.deployments, route)
    assert all(c.locality == "self_hosted" for c in plan.candidates)

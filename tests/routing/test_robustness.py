"""Whatever a client sends, the router answers with a plan or a routing error -- never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.errors import InvalidHint, RoutingError
from tests.routing.factories import DETECTORS, chat, router

ROUTER = router()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "role",
                    "content",
                    "type",
                    "text",
                    "name",
                    "tool_calls",
                    "function",
                    "arguments",
                    "image_url",
                    "metadata",
                    "sensitivity",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(alphabet="0123456789 -.+()/:@aDEkx_sAKI", max_size=300)
)
def test_any_text_scans_without_error(text: str) -> None:
    for hit in DETECTORS.scan(text):
        assert hit.count > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.dictionaries(
        st.sampled_from(["messages", "prompt", "input", "tools", "response_format", "metadata", "max_tokens", "n", "user"]),
        JSON,
        max_size=5,
    ),
    endpoint=st.sampled_from(["chat", "completions", "embeddings"]),
)
def test_any_body_plans_or_is_refused(body: dict, endpoint: str) -> None:
    try:
        ROUTER.plan(chat("auto", endpoint=endpoint, body=body or {"messages": []}), {})  # type: ignore[arg-type]
    except (RoutingError, InvalidHint):
        pass
    report = ROUTER.explain(chat("auto", endpoint=endpoint, body=body or {"messages": []}), {})  # type: ignore[arg-type]
    assert report["decision"] in ("planned", "refused")

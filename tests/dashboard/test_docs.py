"""docs/dashboard.md holds a screenshot of the overview, of a project page and of the What if page,
and the README shows the first two."""

from __future__ import annotations

import re

from tests.helpers import ROOT

IMAGES = {"docs/images/dashboard-overview.png", "docs/images/dashboard-project.png"}
WHAT_IF = "docs/images/dashboard-what-if.png"


def _images(markdown: str, base: str) -> set[str]:
    return {f"{base}{path}" for path in re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", markdown)}


def test_the_dashboard_doc_and_the_readme_show_both_screenshots() -> None:
    doc = (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _images(doc, "docs/") == IMAGES | {WHAT_IF}
    assert _images(readme, "") >= IMAGES
    for image in IMAGES | {WHAT_IF}:
        data = (ROOT / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, image  # a real screenshot, not a placeholder
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 1200 and height >= 800, (image, width, height)


def test_the_dashboard_doc_explains_the_chart_decision_and_the_formulas() -> None:
    doc = (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    assert "SVG drawn on the server" in doc and "no JavaScript" in doc
    assert "reference_cost = ((input - cached) * P_in + cached * P_cached + output * P_out) / 1,000,000" in doc
    assert "savings_usd    = reference_cost - spend_usd" in doc
    assert "forecast_usd" in doc and "window_length / time_elapsed" in doc

"""Stacked bar charts drawn as SVG on the server: no script, no chart library, nothing to download.

Why server-side SVG (docs/dashboard.md says more): the numbers are already exact on the server,
the page works with scripts off and prints as drawn, and there is no vendored bundle to keep
patched. Each segment is a ``<rect>`` carrying its day, series and exact spend
(``data-day``, ``data-series``, ``data-spend-usd``) with a ``<title>`` tooltip; the same numbers
are in a table next to the chart for screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from markupsafe import Markup, escape

from gateway.dashboard.format import day_label, usd, usd_compact

PALETTE = ("#2f6fd0", "#d97900", "#13896b", "#8a5cc4", "#c2417f", "#7a6a2e", "#1a8fb0", "#5b6b7c", "#b23a2e", "#4f8a10")
OTHER_COLOUR = "#a4acb8"
MAX_SERIES = 10

WIDTH, HEIGHT = 900, 300
LEFT, RIGHT, TOP, BOTTOM = 80, 12, 16, 40


@dataclass(slots=True)
class Series:
    """One stacked layer: a label and an exact amount per day (in the chart's day order)."""

    label: str
    values: list[Decimal]
    colour: str = ""
    key: str | None = None  # the group's raw value (None for "other" or "none")
    total: Decimal = field(default=Decimal(0))


def prepare(series: list[Series], max_series: int = MAX_SERIES) -> list[Series]:
    """Biggest first, colours assigned, everything past ``max_series - 1`` folded into "Other"."""
    for s in series:
        s.total = sum(s.values, Decimal(0))
    ordered = sorted(series, key=lambda s: (-s.total, s.label))
    if len(ordered) > max_series:
        kept, rest = ordered[: max_series - 1], ordered[max_series - 1 :]
        other = Series(f"Other ({len(rest)})", [sum(v, Decimal(0)) for v in zip(*(s.values for s in rest), strict=True)])
        other.total = sum(other.values, Decimal(0))
        other.colour = OTHER_COLOUR
        ordered = [*kept, other]
    for i, s in enumerate(ordered):
        if not s.colour:
            s.colour = PALETTE[i % len(PALETTE)]
    return ordered


def nice_step(top: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 x 10^k) so that ``ticks`` steps cover ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return float(factor * magnitude)
    return float(10 * magnitude)


def stacked_bars(days: list[str], series: list[Series], *, chart: str, title: str, description: str) -> Markup:
    """The SVG of a stacked bar chart (one bar per day), or an empty-state paragraph when nothing was spent."""
    totals = [sum((s.values[i] for s in series), Decimal(0)) for i in range(len(days))]
    peak = float(max(totals, default=Decimal(0)))
    if peak <= 0:
        return Markup('<p class="empty" data-chart-empty="true">No spend in this range.</p>')
    step = nice_step(peak)
    top = step * math.ceil(peak / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(days)
    bar = max(1.0, slot * 0.72)

    def y_of(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    out = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{chart}-title {chart}-desc" '
            f'data-chart-svg="{escape(chart)}" xmlns="http://www.w3.org/2000/svg">'
        ),
        f'<title id="{chart}-title">{escape(title)}</title><desc id="{chart}-desc">{escape(description)}</desc>',
        '<g class="grid" aria-hidden="true">',
    ]
    value = 0.0
    while value <= top + step / 1000:
        y = y_of(value)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="ylab" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(usd_compact(value))}</text>')
        value += step
    out.append("</g>")
    every = max(1, math.ceil(len(days) / 10))
    out.append('<g class="xaxis" aria-hidden="true">')
    for i, day in enumerate(days):
        if i % every == 0:
            x = LEFT + slot * i + slot / 2
            minor = " minor" if i % (2 * every) else ""  # hidden on narrow screens, where labels are larger
            out.append(
                f'<text class="xlab{minor}" x="{x:.1f}" y="{HEIGHT - 12}" text-anchor="middle">{escape(day_label(day))}</text>'
            )
    out.append('</g><g class="bars">')
    for i, day in enumerate(days):
        x = LEFT + slot * i + (slot - bar) / 2
        base = 0.0
        for s in series:
            amount = s.values[i]
            if amount <= 0:
                continue
            y0, y1 = y_of(base), y_of(base + float(amount))
            base += float(amount)
            height = max(0.5, y0 - y1)
            tip = f"{day_label(day, year=True)} \u00b7 {s.label}: {usd(amount)}"
            out.append(
                f'<rect x="{x:.2f}" y="{y1:.2f}" width="{bar:.2f}" height="{height:.2f}" fill="{s.colour}" '
                f'data-day="{day}" data-series="{escape(s.label)}" data-spend-usd="{amount.normalize():f}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    out.append("</g>")
    out.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" aria-hidden="true"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))

"""Inline SVG charts: no JavaScript charting library, so pages render complete on the server and
in tests exactly as the operator sees them."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

PALETTE = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563"]


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    colour: str = ""


def bar_chart(bars: list[Bar], *, title: str, width: int = 520, row: int = 26) -> str:
    """Horizontal bars with their labels and values; each bar carries data-label/data-value for tests."""
    if not bars:
        return f'<p class="empty">{escape(title)}: nothing yet</p>'
    top = max(b.value for b in bars) or 1
    label_w, value_w = 120, 70
    span = width - label_w - value_w
    height = row * len(bars) + 8
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, b in enumerate(bars):
        y = 4 + i * row
        w = max(2, round(span * b.value / top)) if b.value else 0
        colour = b.colour or PALETTE[i % len(PALETTE)]
        parts.append(
            f'<g class="bar" data-label="{escape(b.label)}" data-value="{b.value}">'
            f'<text x="{label_w - 8}" y="{y + row * 0.62:.1f}" text-anchor="end">{escape(b.label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 8}" rx="3" fill="{colour}"/>'
            f'<text x="{label_w + w + 6}" y="{y + row * 0.62:.1f}">{b.value:,}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)

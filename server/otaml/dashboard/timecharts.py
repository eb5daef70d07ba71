"""Inline SVG time charts (lines and stacked areas) for the history pages: rendered on the server,
no JavaScript, scaled to their card by the viewBox (the page stays readable at 390 px). Each line
carries data-name and data-values so tests read what is drawn; the legend is HTML, so it wraps."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from otaml.dashboard.charts import PALETTE
from otaml.fleet.insight import Series

W, H = 480, 160
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 8, 22
FIXED = {"healthy": "#16a34a", "unstable": "#ca8a04", "overdriven": "#ea580c", "failsoon": "#dc2626",
         "confirmed": "#16a34a", "rolled_back": "#dc2626", "rejected": "#9333ea", "download_failed": "#ca8a04",
         "download_started": "#2563eb", "download_progress": "#0891b2", "other": "#9ca3af"}


def colour(name: str, i: int) -> str:
    return FIXED.get(name, PALETTE[i % len(PALETTE)])


def _label(ts: int, resolution: int) -> str:
    t = datetime.fromtimestamp(ts, UTC)
    return t.strftime("%H:%M") if resolution < 3600 else t.strftime("%d %H:00")


def _fmt(v: float, unit: str) -> str:
    if unit == "%":
        return f"{100 * v:.0f}%"
    if v >= 10000:
        return f"{v / 1000:.0f}k{unit}"
    return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"


def _values(vals: list[float | None]) -> str:
    return ",".join("" if v is None else f"{v:.4g}" for v in vals)


def time_chart(series: Series, *, title: str, unit: str = "", stacked: bool = False, percent: bool = False,
               testid: str = "") -> str:
    """Lines (or stacked areas) over the series' bucket starts. ``percent``: values are shares 0..1."""
    names = [n for n, vals in series.lines.items() if any(v for v in vals)]
    n = len(series.starts)
    tid = f' data-testid="{escape(testid)}"' if testid else ""
    if not names or n == 0:
        return f'<div class="tchart-wrap"{tid}><p class="empty">{escape(title)}: no data in this range yet</p></div>'
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    if stacked:
        tops = [sum(series.lines[k][i] or 0 for k in names) for i in range(n)]
        top = 1.0 if percent else max(tops) or 1.0
    else:
        top = 1.0 if percent else max((v or 0) for k in names for v in series.lines[k]) or 1.0

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(v, top) / top)

    out = [f'<div class="tchart-wrap"{tid}><svg class="tchart" role="img" aria-label="{escape(title)}" viewBox="0 0 {W} {H}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for frac in (0, 0.5, 1):
        gy = TOP + plot_h * (1 - frac)
        tick = escape(_fmt(top * frac, "%" if percent else unit))
        out.append(f'<line class="gl" x1="{LEFT}" x2="{W - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
                   f'<text class="axis" x="{LEFT - 4}" y="{gy + 4:.1f}" text-anchor="end">{tick}</text>')
    for i in sorted({0, n // 2, n - 1}):
        anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
        label = _label(series.starts[i], series.resolution)
        out.append(f'<text class="axis" x="{x(i):.1f}" y="{H - 6}" text-anchor="{anchor}">{label}</text>')
    base = [0.0] * n
    for k, name in enumerate(names):
        vals = series.lines[name]
        c = colour(name, k)
        attrs = f'class="line" data-name="{escape(name)}" data-values="{_values(vals)}"'
        if stacked:
            upper = [base[i] + (vals[i] or 0) for i in range(n)]
            if percent:
                upper = [u if any(series.lines[m][i] is not None for m in names) else base[i] for i, u in enumerate(upper)]
            pts = [f"{x(i):.1f},{y(upper[i]):.1f}" for i in range(n)] + [f"{x(i):.1f},{y(base[i]):.1f}" for i in range(n - 1, -1, -1)]
            out.append(f'<g {attrs}><polygon points="{" ".join(pts)}" fill="{c}" fill-opacity="0.75" stroke="{c}" stroke-width="0.5"/></g>')
            base = upper
        else:
            segments, current = [], []
            for i, v in enumerate(vals):
                if v is None:
                    if current:
                        segments.append(current)
                    current = []
                else:
                    current.append(f"{x(i):.1f},{y(v):.1f}")
            if current:
                segments.append(current)
            lines = "".join(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{c}" stroke-width="2"/>' if len(seg) > 1 else
                f'<circle cx="{seg[0].split(",")[0]}" cy="{seg[0].split(",")[1]}" r="2.5" fill="{c}"/>'
                for seg in segments
            )
            out.append(f"<g {attrs}>{lines}</g>")
    out.append("</svg>")
    legend = "".join(f'<li><i style="background:{colour(name, k)}"></i>{escape(name)}</li>' for k, name in enumerate(names))
    out.append(f'<ul class="legend">{legend}</ul></div>')
    return "".join(out)

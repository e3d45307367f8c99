"""The report's curves as inline SVG: one chart per curve kind, one line per method (no image files,
no script: they scale with the page and print)."""

from __future__ import annotations

import dataclasses
import html
from typing import Sequence

# Distinguishable on white and for the common colour-vision deficiencies (Okabe & Ito's palette).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
WIDTH, HEIGHT = 320, 250
LEFT, RIGHT, TOP, BOTTOM = 42, 10, 24, 40   # margins around the plot area


@dataclasses.dataclass(frozen=True)
class Line:
    label: str              # shown in the legend, e.g. "rd4ad 0.953"
    x: Sequence[float]
    y: Sequence[float]
    steps: bool = False     # a step function continued to the left of each point (precision-recall)


def _points(line: Line) -> list[tuple[float, float]]:
    pairs = list(zip(line.x, line.y))
    if not line.steps:
        return pairs
    stepped = []
    for (x0, _), (x1, y1) in zip(pairs, pairs[1:]):
        stepped += [(x0, y1), (x1, y1)]
    return ([pairs[0]] + stepped) if pairs else []


def line_chart(title: str, x_label: str, y_label: str, lines: Sequence[Line], *, x_max: float = 1.0,
               diagonal: bool = False) -> str:
    """An SVG line chart of ``lines`` on [0, x_max] x [0, 1] with its axes, ticks and a legend."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + plot_w * min(max(x / x_max, 0.0), 1.0)

    def sy(y: float) -> float:
        return TOP + plot_h * (1.0 - min(max(y, 0.0), 1.0))

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{WIDTH / 2}" y="15" text-anchor="middle" class="chart-title">{html.escape(title)}</text>',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>']
    for i in range(5):
        fraction = i / 4
        parts.append(f'<text x="{sx(fraction * x_max):.1f}" y="{TOP + plot_h + 13}" text-anchor="middle" '
                     f'class="tick">{fraction * x_max:g}</text>')
        parts.append(f'<text x="{LEFT - 4}" y="{sy(fraction) + 3:.1f}" text-anchor="end" class="tick">{fraction:g}</text>')
        if 0 < i < 4:
            parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(fraction):.1f}" y2="{sy(fraction):.1f}" class="grid"/>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 14}" text-anchor="middle" class="axis">'
                 f'{html.escape(x_label)}</text>')
    parts.append(f'<text transform="translate(11 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
                 f'class="axis">{html.escape(y_label)}</text>')
    if diagonal:
        parts.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(x_max)}" y2="{sy(1)}" class="chance"/>')
    for number, line in enumerate(lines):
        colour = PALETTE[number % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in _points(line))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        y = TOP + plot_h - 8 - 12 * (len(lines) - 1 - number)
        parts.append(f'<rect x="{LEFT + plot_w - 118}" y="{y - 7}" width="10" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{LEFT + plot_w - 104}" y="{y - 3}" class="legend">{html.escape(line.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)

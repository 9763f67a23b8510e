"""Charts as self-contained SVG, drawn on the server: no script, no CDN, nothing to load.

Each function returns `Markup` ready to put in a page: every text that came from data (a week,
a step, an outcome) is escaped, colours are SVG presentation attributes (the pages' Content
Security Policy allows no inline `style`), and each chart is an `<svg role="img">` with a
`<title>` and a `<desc>` that say what it shows, for screen readers. Sizes are a viewBox: the
page's CSS makes the chart as wide as its card.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from duly.language.model import ProcessSpec, TaskStep

OK = "#2e9e5b"
BAD = "#d64545"
NEUTRAL = "#c5cbd6"
GOAL = "#2f5bd3"
GRID = "#e3e6ec"
TEXT = "#1c2330"
MUTED = "#5d6778"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif"'
PALETTE = (
    "#2f5bd3",
    "#2e9e5b",
    "#e69500",
    "#d64545",
    "#6b46c1",
    "#0e9aa7",
    "#8a94a6",
    "#c2185b",
    "#7cb342",
    "#5d4037",
    "#f06292",
    "#455a64",
)
"""Outcome colours, given to a process's outcomes in the order it declares them."""
NO_OUTCOME = "(none)"
"""The label of a visit that closed without an outcome."""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _svg(width: int, height: int, title: str, desc: str, body: list[str], css: str) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart {css}" role="img" {FONT} font-size="12">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )
    return Markup(head + "".join(body) + "</svg>")


# --- attainment against the goal, week by week ------------------------------------------------


@dataclass(frozen=True)
class WeekBar:
    """One week of the attainment chart."""

    label: str
    attainment: float | None
    measured: int = 0
    caption: str = ""


def attainment_chart(
    weeks: Sequence[WeekBar], goal: float | None, *, title: str = "SLA attainment by week"
) -> Markup:
    """Bars of weekly attainment (green at or above the goal, red below) and the goal's line.

    Args:
        weeks: The weeks, oldest first; a week with nothing measured shows as a grey stub.
        goal: The goal (0..1), drawn as a dashed line; None draws none and colours bars blue.
        title: The chart's accessible title.
    """
    width, height = 720, 260
    left, right, top, bottom = 44, 16, 18, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="{MUTED}">'
            f"{tick * 100:.0f}%</text>"
        )
    slot = plot_w / max(len(weeks), 1)
    bar = min(56.0, slot * 0.62)
    described = []
    for index, week in enumerate(weeks):
        x = left + slot * index + (slot - bar) / 2
        centre = x + bar / 2
        if week.attainment is None:
            body.append(
                f'<rect x="{x:.1f}" y="{y(0) - 3:.1f}" width="{bar:.1f}" height="3" rx="1.5" '
                f'fill="{NEUTRAL}"/>'
                f'<text x="{centre:.1f}" y="{y(0) - 9:.1f}" text-anchor="middle" '
                f'fill="{MUTED}" font-size="11">no data</text>'
            )
            described.append(f"{week.label}: no data")
        else:
            colour = GOAL if goal is None else (OK if week.attainment >= goal - 1e-9 else BAD)
            top_y = y(week.attainment)
            body.append(
                f'<rect x="{x:.1f}" y="{top_y:.1f}" width="{bar:.1f}" '
                f'height="{max(y(0) - top_y, 1.5):.1f}" rx="3" fill="{colour}">'
                f"<title>{escape(week.label)}: {_pct(week.attainment)} of {week.measured}"
                "</title></rect>"
                f'<text x="{centre:.1f}" y="{top_y - 6:.1f}" text-anchor="middle" '
                f'fill="{TEXT}" font-weight="600">{_pct(week.attainment)}</text>'
            )
            described.append(f"{week.label}: {_pct(week.attainment)} of {week.measured}")
        body.append(
            f'<text x="{centre:.1f}" y="{height - bottom + 17}" text-anchor="middle" '
            f'fill="{TEXT}">{escape(week.label)}</text>'
        )
        if week.caption:
            body.append(
                f'<text x="{centre:.1f}" y="{height - bottom + 32}" text-anchor="middle" '
                f'fill="{MUTED}" font-size="11">{escape(week.caption)}</text>'
            )
    if goal is not None:
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(goal):.1f}" y2="{y(goal):.1f}" '
            f'stroke="{GOAL}" stroke-width="2" stroke-dasharray="6 4"/>'
            f'<rect x="{width - right - 74}" y="{y(goal) - 19:.1f}" width="72" height="16" '
            f'rx="8" fill="#eaf0ff"/>'
            f'<text x="{width - right - 38}" y="{y(goal) - 7:.1f}" text-anchor="middle" '
            f'fill="{GOAL}" font-size="11" font-weight="600">goal {_pct(goal)}</text>'
        )
    goal_text = f"goal {_pct(goal)}; " if goal is not None else ""
    return _svg(width, height, title, goal_text + "; ".join(described), body, "chart-weeks")


# --- a rep's weeks at a glance ------------------------------------------------------------------


@dataclass(frozen=True)
class WeekDot:
    """One week of a rep: met the goal, missed it, or not active."""

    label: str
    attainment: float | None
    meets_goal: bool | None


def week_dots(weeks: Sequence[WeekDot]) -> Markup:
    """A row of dots, one per week: green met the goal, red missed it, hollow not active."""
    gap = 18
    width, height = max(gap * len(weeks), gap), 18
    body = []
    for index, week in enumerate(weeks):
        cx = gap * index + gap / 2
        tip = f"{week.label}: " + (
            "not active" if week.attainment is None else _pct(week.attainment)
        )
        if week.attainment is None:
            shape = f'fill="#fff" stroke="{NEUTRAL}" stroke-width="1.5"'
        else:
            shape = f'fill="{OK if week.meets_goal is not False else BAD}"'
        body.append(
            f'<circle cx="{cx:.1f}" cy="9" r="5.5" {shape}><title>{escape(tip)}</title></circle>'
        )
    met = sum(1 for w in weeks if w.meets_goal)
    active = sum(1 for w in weeks if w.attainment is not None)
    return _svg(
        width,
        height,
        "Weeks meeting the goal",
        f"{met} of {active} active weeks met the goal",
        body,
        "chart-dots",
    )


# --- the funnel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelBar:
    """One step of the funnel: the instances that reached it and their share of the first."""

    label: str
    instances: int
    share: float | None
    note: str = ""


def funnel_chart(steps: Sequence[FunnelBar], *, title: str = "Funnel by step") -> Markup:
    """Horizontal bars, one per step in process order, as wide as their share of the start."""
    width, row = 480, 30
    label_w, value_w = 132, 84
    height = max(row * len(steps), row) + 8
    plot = width - label_w - value_w
    body = []
    described = []
    for index, step in enumerate(steps):
        y = 4 + row * index
        share = step.share if step.share is not None else 0.0
        bar = max(plot * min(share, 1.0), 2.0)
        body.append(
            f'<text x="{label_w - 10}" y="{y + 19}" text-anchor="end" fill="{TEXT}">'
            f"<title>{escape(step.label)}</title>{escape(_short(step.label, 19))}</text>"
            f'<rect x="{label_w}" y="{y + 5}" width="{plot}" height="{row - 10}" rx="4" '
            f'fill="#f1f3f7"/>'
            f'<rect x="{label_w}" y="{y + 5}" width="{bar:.1f}" height="{row - 10}" rx="4" '
            f'fill="{GOAL}" fill-opacity="{0.35 + 0.65 * min(share, 1.0):.2f}"/>'
            f'<text x="{label_w + plot + 8}" y="{y + 19}" fill="{TEXT}" font-weight="600">'
            f"{step.instances}"
            f'<tspan fill="{MUTED}" font-weight="400"> · {_pct(step.share)}</tspan></text>'
        )
        described.append(f"{step.label}: {step.instances} ({_pct(step.share)})")
    return _svg(width, height, title, "; ".join(described), body, "chart-funnel")


# --- outcome mix per step ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeSlice:
    """One outcome of a step and how many visits ended with it."""

    outcome: str
    count: int


def declared_outcomes(spec: ProcessSpec) -> list[str]:
    """Every outcome a process's task steps can record, in a fixed order.

    The outcomes of its task steps as the file lists them, then an `on:` event ending a task
    (`event:<type>`, in the file's order), then an instance ending under it (`event:`), then no
    outcome. It depends on the definition only, never on the rows a view shows, so each
    outcome keeps its colour in every view of the process (a rep's, a team's, an admin's).
    """
    names: list[str] = []
    for step in spec.steps.values():
        if isinstance(step, TaskStep):
            names += step.outcomes
    names += [f"event:{event}" for event in spec.on]
    names += ["event:", NO_OUTCOME]
    return list(dict.fromkeys(names))


def outcome_colours(declared: Sequence[str], shown: Iterable[str] = ()) -> dict[str, str]:
    """A colour per outcome: the palette in declared order; one not declared, by its name.

    Args:
        declared: The process's outcomes (`declared_outcomes`): distinct colours while the
            palette lasts.
        shown: Outcomes to colour besides (say, from an older version of the process): each
            gets a palette colour chosen by a hash of its name, the same in every view.
    """
    colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(declared)}
    for name in shown:
        if name not in colours:
            digest = hashlib.sha256(name.encode()).digest()
            colours[name] = PALETTE[int.from_bytes(digest[:4], "big") % len(PALETTE)]
    return colours


def outcome_chart(
    steps: Sequence[tuple[str, Sequence[OutcomeSlice]]],
    *,
    declared: Sequence[str] = (),
    title: str = "Outcomes by step",
) -> Markup:
    """One 100% stacked bar per step, then a table of the outcomes: colour, full name, count.

    Args:
        steps: Each step with its outcomes' counts.
        declared: The process's outcomes in declared order (`declared_outcomes`), which fixes
            each one's colour whatever this view shows.
        title: The chart's accessible title.
    """
    width, row = 480, 30
    label_w, total_w = 132, 40
    plot = width - label_w - total_w
    colours = outcome_colours(declared, (piece.outcome for _, s in steps for piece in s))
    height = row * max(len(steps), 1) + 8
    body = []
    described = []
    totals: dict[str, int] = {}
    for index, (step, slices) in enumerate(steps):
        y = 4 + row * index
        total = sum(piece.count for piece in slices)
        body.append(
            f'<text x="{label_w - 10}" y="{y + 19}" text-anchor="end" fill="{TEXT}">'
            f"<title>{escape(step)}</title>{escape(_short(step, 19))}</text>"
        )
        x = float(label_w)
        parts = []
        for piece in slices:
            totals[piece.outcome] = totals.get(piece.outcome, 0) + piece.count
            if not total or not piece.count:
                continue
            share = piece.count / total
            w = plot * share
            body.append(
                f'<rect x="{x:.1f}" y="{y + 5}" width="{w:.1f}" height="{row - 10}" '
                f'fill="{colours[piece.outcome]}" data-outcome="{escape(piece.outcome)}">'
                f"<title>{escape(step)}: {escape(piece.outcome)}, "
                f"{piece.count} ({_pct(share)})</title></rect>"
            )
            if w > 34:
                body.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + 19}" text-anchor="middle" fill="#fff" '
                    f'font-size="11" font-weight="600">{_pct(share)}</text>'
                )
            parts.append(f"{piece.outcome} {_pct(share)}")
            x += w
        body.append(f'<text x="{label_w + plot + 8}" y="{y + 19}" fill="{MUTED}">{total}</text>')
        described.append(f"{step}: " + ", ".join(parts))
    chart = _svg(width, height, title, "; ".join(described), body, "chart-outcomes")
    return chart + _outcome_key(totals, colours)


def _outcome_key(totals: dict[str, int], colours: dict[str, str]) -> Markup:
    """The chart's key as a table: each outcome's colour, full name, visits and share."""
    rank = {name: index for index, name in enumerate(colours)}
    visits = sum(totals.values())
    rows = []
    for name in sorted(totals, key=lambda n: rank[n]):
        swatch = (
            '<svg class="swatch" viewBox="0 0 12 12" width="12" height="12" aria-hidden="true">'
            f'<rect width="12" height="12" rx="2" fill="{colours[name]}"/></svg>'
        )
        share = _pct(totals[name] / visits) if visits else _pct(None)
        rows.append(
            f'<tr data-outcome="{escape(name)}"><td>{swatch} {escape(name)}</td>'
            f'<td class="num">{totals[name]}</td><td class="num">{share}</td></tr>'
        )
    return Markup(
        '<table class="table outcome-key"><thead><tr><th>Outcome</th><th class="num">Visits'
        '</th><th class="num">Share</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

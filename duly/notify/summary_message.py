"""The weekly summary as a `Message`, so it reads the same in text, HTML email and Slack.

What the summary contains (attainment, who slipped, open breaches) is decided by
`duly.summary.build_summary`; this only words it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from duly.notify.model import Action, Fact, Message, Section

if TYPE_CHECKING:
    from duly.summary import WeeklySummary


def pct(value: float | None) -> str:
    """A share as a whole percentage; `-` when there is none."""
    return "-" if value is None else f"{value * 100:.0f}%"


def summary_message(summary: WeeklySummary) -> Message:
    """The message of one manager's weekly summary."""
    s = summary
    teams = ", ".join(s.teams)
    attainment = Section(title="Attainment against the goal")
    for p in s.processes:
        counts = f"{p.met} met, {p.breached} breached"
        attainment.lines.append(
            f"{p.title} ({p.team}): {pct(p.attainment)} (goal {pct(p.goal)}, {counts}; "
            f"week before {pct(p.previous_attainment)})"
            + ("  BELOW GOAL" if p.meets_goal is False else "")
        )
    if not s.processes:
        attainment.lines.append("No SLA work was measured for your teams this week.")
    slipped = Section(title="Who slipped")
    for r in s.slipped:
        slipped.lines.append(f"{r.name} ({r.rep}), {r.process}: {pct(r.attainment)}, {r.reason}")
    if not s.slipped:
        slipped.lines.append("Nobody: every rep met the goal and held their level.")
    breaches = Section(title=f"Open breaches right now: {s.open_breach_count}")
    for b in s.open_breaches:
        breaches.lines.append(
            f"{b.title} ({b.process}), {b.assignee or 'unassigned'}, {b.overdue_hours} h past due"
        )
        breaches.links.append(f"{s.link}/instances/{b.instance_id}" if s.link else None)
    if s.open_breach_count > len(s.open_breaches):
        breaches.lines.append(f"... and {s.open_breach_count - len(s.open_breaches)} more")
        breaches.links.append(f"{s.link}/dashboard" if s.link else None)
    actions = [Action(label="Open the dashboard", url=f"{s.link}/dashboard")] if s.link else []
    return Message(
        kind="summary.weekly",
        label="Weekly summary",
        subject=s.subject,
        headline=f"{s.week}, {teams}",
        summary=f"Weekly summary for {s.name}, {s.week} (teams: {teams}).",
        facts=[
            Fact(label="Week", value=s.week),
            Fact(label="Teams", value=teams),
            Fact(label="Open breaches", value=str(s.open_breach_count)),
        ],
        sections=[attainment, slipped, breaches],
        actions=actions,
        footer=f"Sent to {s.name} ({s.manager}) every Monday as the manager of {teams}.",
    )

"""A simulation's result as a table, CSV, JSON or an SVG chart, alone or against another."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from markupsafe import Markup

from duly.charts import WeekBar, attainment_chart


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _band(band: dict[str, float | None]) -> str:
    if band["mean"] is None:
        return "-"
    return f"{_pct(band['mean'])} ({_pct(band['low'])}-{_pct(band['high'])})"


def _rungs(rungs: dict[str, float]) -> str:
    return " ".join(f"r{r}:{n:.1f}" for r, n in sorted(rungs.items())) or "0"


def week_rows(result: dict[str, Any], other: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Flat rows per process and week; with `other`, its figures and the difference too."""
    rows: list[dict[str, Any]] = []
    theirs = {(w["process"], w["week"]): w for w in (other or {}).get("weeks", [])}
    for week in result["weeks"]:
        att, backlog = week["attainment"], week["backlog"]
        row: dict[str, Any] = {
            "process": week["process"],
            "week": week["week"],
            "goal": week["goal"],
            "tasks": round(week["tasks"], 1),
            "attainment": att["mean"],
            "attainment_low": att["low"],
            "attainment_high": att["high"],
            "breaches": round(sum(week["breaches_by_rung"].values()), 1),
            "breaches_by_rung": _rungs(week["breaches_by_rung"]),
            "backlog": backlog["mean"],
        }
        if other is not None:
            them = theirs.get((week["process"], week["week"]))
            o_att = them["attainment"]["mean"] if them else None
            o_backlog = them["backlog"]["mean"] if them else None
            row.update(
                {
                    "against_attainment": o_att,
                    "against_low": them["attainment"]["low"] if them else None,
                    "against_high": them["attainment"]["high"] if them else None,
                    "against_backlog": o_backlog,
                    "attainment_diff": None
                    if o_att is None or att["mean"] is None
                    else att["mean"] - o_att,
                    "backlog_diff": None
                    if o_backlog is None or backlog["mean"] is None
                    else backlog["mean"] - o_backlog,
                }  # fmt: skip
            )
        rows.append(row)
    return rows


def as_table(
    name: str,
    result: dict[str, Any],
    fit_rows: list[dict[str, Any]],
    other_name: str | None = None,
    other: dict[str, Any] | None = None,
) -> str:
    """Lines for the terminal: weekly figures, per rep, and the fit they rest on."""
    lines = [f"{name}: {result['runs']} runs, {result['instances']:.0f} instances a run"]
    if other is not None:
        lines[0] += f"; against {other_name}: {other['runs']} runs"
    header = f"{'process':<18} {'wk':>2} {'goal':>6} {'attainment (min-max)':>24} "
    header += f"{'breaches by rung':>20} {'backlog':>8}"
    if other is not None:
        header += f" | {'against':>24} {'backlog':>8} {'diff':>8} {'backlog':>8}"
    lines += ["", header]
    for row in week_rows(result, other):
        band = {"mean": row["attainment"], "low": row["attainment_low"]}
        band["high"] = row["attainment_high"]
        line = (
            f"{row['process']:<18} {row['week']:>2} {_pct(row['goal']):>6} {_band(band):>24} "
            f"{row['breaches_by_rung']:>20} {row['backlog'] or 0:>8.1f}"
        )
        if other is not None:
            theirs = {
                "mean": row["against_attainment"],
                "low": row["against_low"],
                "high": row["against_high"],
            }
            diff = row["attainment_diff"]
            line += (
                f" | {_band(theirs):>24} {row['against_backlog'] or 0:>8.1f} "
                f"{'-' if diff is None else f'{diff * 100:+.1f}pt':>8} "
                f"{row['backlog_diff'] or 0:>+8.1f}"
            )
        lines.append(line)
    lines += ["", f"{'rep':<10} {'tasks':>7} {'attainment (min-max)':>24}"]
    for rep, figures in result["reps"].items():
        lines.append(f"{rep:<10} {figures['tasks']:>7.1f} {_band(figures['attainment']):>24}")
    lines += ["", "habits fitted from the recorded facts (business hours):"]
    lines.append(
        f"{'rep':<10} {'process/step':<30} {'facts':>5} {'p50 rec':>8} {'p50 fit':>8} "
        f"{'p90 rec':>8} {'p90 fit':>8}"
    )
    for fit in fit_rows:
        lines.append(
            f"{fit['rep']:<10} {fit['process'] + '/' + fit['step']:<30} {fit['facts']:>5} "
            f"{_num(fit.get('recorded_p50_h')):>8} {_num(fit.get('fitted_p50_h')):>8} "
            f"{_num(fit.get('recorded_p90_h')):>8} {_num(fit.get('fitted_p90_h')):>8}"
            + (f"  ! {fit['warning']}" if fit.get("warning") else "")
        )
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def as_csv(result: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """The weekly rows as CSV."""
    rows = week_rows(result, other)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def as_json(
    name: str,
    result: dict[str, Any],
    fit_rows: list[dict[str, Any]],
    other_name: str | None = None,
    other: dict[str, Any] | None = None,
) -> str:
    """Everything, as JSON: both results, the weekly rows with differences, the fit."""
    document: dict[str, Any] = {
        "scenario": name,
        "result": result,
        "weeks": week_rows(result, other),
        "fit": fit_rows,
    }
    if other is not None:
        document["against"] = {"scenario": other_name, "result": other}
    return json.dumps(document, indent=2, default=str)


def as_svg(
    name: str,
    result: dict[str, Any],
    other_name: str | None = None,
    other: dict[str, Any] | None = None,
) -> Markup:
    """The first process's weekly attainment (mean, band in captions), side by side with `other`."""
    rows = week_rows(result, other)
    if not rows:
        return attainment_chart([], None, title=f"What if: {name}")
    process = rows[0]["process"]
    bars: list[WeekBar] = []
    # Side by side: B (the scenario compared against) left of A (this one) each week
    for row in (r for r in rows if r["process"] == process):
        if other is not None:
            bars.append(
                WeekBar(
                    f"W{row['week']} B",
                    row["against_attainment"],
                    measured=round(row["tasks"]),
                    caption=_range(row["against_low"], row["against_high"]),
                )
            )
        bars.append(
            WeekBar(
                f"W{row['week']} A" if other is not None else f"Week {row['week']}",
                row["attainment"],
                measured=round(row["tasks"]),
                caption=_range(row["attainment_low"], row["attainment_high"]),
            )
        )
    title = f"What if: {name}" + (f" (A) against {other_name} (B)" if other is not None else "")
    return attainment_chart(bars, rows[0]["goal"], title=f"{title} ({process})")


def _range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"{low * 100:.0f}-{high * 100:.0f}%"

"""Stages across processes: the funnel of records by stage, and how long they stay in each.

A stage (org.yaml `stages:`, in order) is reached when a step visit marked with it closes
(`stage:` on a step, `outcome_stages:` on a task's outcome); the fact row keeps it. A record is
one business key, whichever process moved it on: processes that share a record use the same
`trigger.key` (the lead's id, say), so a lead's suspect and prospect stages from one process and
its quote stage from another line up. Time in a stage runs from the record's first arrival in it
to its first arrival in any stage after that; a record still in its last stage has no time yet.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from statistics import median

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from duly.store.models import Instance, StepFact


class StageRow(BaseModel):
    """One stage of the funnel."""

    stage: str
    reached: int = Field(description="records that reached this stage or a later one")
    entered: int = Field(description="records a step or outcome put in this stage")
    share: float | None = Field(description="`reached` as a share of the first stage's")
    in_stage_now: int = Field(description="records whose latest stage is this one")
    p50_seconds: float | None = Field(description="median wall time in the stage, of those left")
    moved_on: int = Field(description="records that went on to a later stage")


class StageReport(BaseModel):
    """The stages funnel over a period: records by business key, across processes."""

    stages: list[str]
    records: int
    rows: list[StageRow]


class RecordStage(BaseModel):
    """When one record first reached a stage, and through which process and step."""

    stage: str
    at: datetime
    process: str
    step: str


def stage_funnel(
    session: Session,
    stages: list[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    teams: list[str] | None = None,
) -> StageReport:
    """The stages funnel: how many records reached each stage and how long they stayed.

    Args:
        session: A database session.
        stages: org.yaml's stages, in order.
        since: Count arrivals at or after this instant.
        until: Count arrivals before this instant.
        teams: Only visits of these teams (None: every team).
    """
    statement = (
        select(col(Instance.business_key), col(StepFact.stage), col(StepFact.closed_at))
        .join(Instance, col(Instance.id) == col(StepFact.instance_id))
        .where(col(StepFact.stage).in_(stages))
    )
    if since is not None:
        statement = statement.where(col(StepFact.closed_at) >= since)
    if until is not None:
        statement = statement.where(col(StepFact.closed_at) < until)
    if teams is not None:
        statement = statement.where(col(StepFact.team).in_(teams))
    first: dict[str, dict[str, datetime]] = defaultdict(dict)
    for key, stage, at in session.execute(statement):
        if stage is None:
            continue
        if stage not in first[key] or at < first[key][stage]:
            first[key][stage] = at
    order = {stage: index for index, stage in enumerate(stages)}
    entered = dict.fromkeys(stages, 0)
    reached = dict.fromkeys(stages, 0)
    now_in = dict.fromkeys(stages, 0)
    stays: dict[str, list[float]] = defaultdict(list)
    for arrivals in first.values():
        for stage in arrivals:
            entered[stage] += 1
        furthest = max(order[stage] for stage in arrivals)
        for stage in stages[: furthest + 1]:
            reached[stage] += 1
        timeline = sorted(arrivals.items(), key=lambda item: (item[1], order[item[0]]))
        for (stage, at), (_, after) in zip(timeline, timeline[1:], strict=False):
            stays[stage].append((after - at).total_seconds())
        now_in[timeline[-1][0]] += 1
    top = reached[stages[0]] if stages else 0
    rows = [
        StageRow(
            stage=stage,
            reached=reached[stage],
            entered=entered[stage],
            share=reached[stage] / top if top else None,
            in_stage_now=now_in[stage],
            p50_seconds=median(stays[stage]) if stays[stage] else None,
            moved_on=len(stays[stage]),
        )
        for stage in stages
    ]
    return StageReport(stages=stages, records=len(first), rows=rows)


def record_stages(session: Session, business_key: str) -> list[RecordStage]:
    """One record's way through the stages, across processes: first arrival in each."""
    statement = (
        select(
            col(StepFact.stage), col(StepFact.closed_at), col(StepFact.process), col(StepFact.step)
        )
        .join(Instance, col(Instance.id) == col(StepFact.instance_id))
        .where(col(Instance.business_key) == business_key, col(StepFact.stage).is_not(None))
        .order_by(col(StepFact.closed_at))
    )
    seen: dict[str, RecordStage] = {}
    for stage, at, process, step in session.execute(statement):
        if stage is not None:
            seen.setdefault(stage, RecordStage(stage=stage, at=at, process=process, step=step))
    return list(seen.values())

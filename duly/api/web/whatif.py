"""The "What if" page: managers run a scenario from definitions/scenarios/ in the background.

A run is a job kept as one JSON file under `<data dir>/simulations/<id>.json`: its scenario,
progress (runs done of runs), then its result (the table, the weekly rows and the chart) or the
reason it failed. The page lists the jobs, newest first; a job's page refreshes itself while it
runs. Only scenario files that exist in the definitions folder can be named: the form sends a
file name, never a path.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from duly.api.web.pages import form_of
from duly.api.web.render import context_of, render
from duly.api.web.session import CSRF_FIELD, WebUser, check_csrf
from duly.language.errors import DefinitionError
from duly.services.auth import Principal
from duly.services.errors import Invalid, NotAllowed, NotFound

router = APIRouter(include_in_schema=False)
MAX_RUNS = 5
_RUNNING: set[asyncio.Task[None]] = set()  # keeps the background jobs referenced until done


def _manager(user: Principal) -> None:
    if user.role not in ("manager", "admin"):
        raise NotAllowed("What if is for managers and admins")


def _scenarios(request: Request) -> dict[str, Path]:
    folder = Path(context_of(request).settings.definitions) / "scenarios"
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.glob("*.yaml")) if p.is_file()}


def _jobs_folder(request: Request) -> Path:
    return Path(context_of(request).settings.data_dir) / "simulations"


def _save(path: Path, job: dict[str, Any]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(job, default=str), encoding="utf-8")
    partial.replace(path)  # a reader never sees half a file


def _jobs(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    jobs = []
    for path in folder.glob("*.json"):
        try:
            jobs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(jobs, key=lambda job: str(job.get("created", "")), reverse=True)


@router.get("/what-if", response_class=HTMLResponse)
def what_if(request: Request, user: WebUser) -> HTMLResponse:
    """The scenarios to run, and the runs kept so far."""
    _manager(user)
    return render(
        request,
        user,
        "whatif.html",
        {"scenarios": list(_scenarios(request)), "jobs": _jobs(_jobs_folder(request)), "job": None},
    )


@router.post("/what-if")
async def start_what_if(request: Request, user: WebUser) -> Response:
    """Start a scenario (and optionally one to compare with) in the background."""
    _manager(user)
    form = await form_of(request)
    check_csrf(request, form.get(CSRF_FIELD))
    scenarios = _scenarios(request)
    name, against = form.get("scenario", ""), form.get("against", "")
    if name not in scenarios:
        raise Invalid(f"no scenario file {name!r} in definitions/scenarios/")
    if against and against not in scenarios:
        raise Invalid(f"no scenario file {against!r} in definitions/scenarios/")
    try:
        runs = int(form.get("runs", "3"))
    except ValueError:
        raise Invalid("runs must be a whole number") from None
    if not 1 <= runs <= MAX_RUNS:
        raise Invalid(f"runs must be between 1 and {MAX_RUNS}")
    folder = _jobs_folder(request)
    folder.mkdir(parents=True, exist_ok=True)
    job_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    job: dict[str, Any] = {
        "id": job_id,
        "scenario": name,
        "against": against or None,
        "runs": runs,
        "by": user.id,
        "created": datetime.now(UTC).isoformat(),
        "status": "running",
        "done": 0,
        "total": runs * (2 if against else 1),
    }
    path = folder / f"{job_id}.json"
    _save(path, job)
    context = context_of(request)
    chosen = [scenarios[name], *([scenarios[against]] if against else [])]
    task = asyncio.create_task(_run_job(path, job, chosen, context.settings, context.definitions))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return RedirectResponse(f"/what-if/{job_id}", status_code=303)


async def _run_job(
    path: Path, job: dict[str, Any], files: list[Path], settings: Any, definitions: Any
) -> None:
    from duly.simulate import report
    from duly.simulate.simulation import simulate

    def progress(done: int, _total: int) -> None:
        job["done"] += 1
        _save(path, job)

    try:
        outcomes = [
            await simulate(file, settings, definitions, runs=job["runs"], progress=progress)
            for file in files
        ]
        first = outcomes[0]
        other = outcomes[1] if len(outcomes) > 1 else None
        other_summary = other.summary if other else None
        other_name = other.name if other else None
        job.update(
            status="done",
            table=report.as_table(
                first.name, first.summary, first.fit_rows, other_name, other_summary
            ),
            rows=report.week_rows(first.summary, other_summary),
            svg=str(report.as_svg(first.name, first.summary, other_name, other_summary)),
            seconds=round(sum(o.seconds for o in outcomes), 1),
        )
    except DefinitionError as exc:
        job.update(status="failed", error=exc.report())
    except Exception as exc:  # a job that dies says why on its page rather than hanging there
        job.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    _save(path, job)


@router.get("/what-if/{job_id}", response_class=HTMLResponse)
def what_if_job(job_id: str, request: Request, user: WebUser) -> HTMLResponse:
    """One run: its progress while it runs, its table and chart when done."""
    _manager(user)
    folder = _jobs_folder(request)
    path = folder / f"{job_id}.json"
    if not job_id.replace("-", "").isalnum() or not path.is_file():
        raise NotFound(f"no what-if run {job_id!r}")
    job = json.loads(path.read_text(encoding="utf-8"))
    chart = Markup(job["svg"]) if job.get("svg") else None  # drawn by duly.charts, escaped
    page = render(
        request,
        user,
        "whatif.html",
        {"scenarios": list(_scenarios(request)), "jobs": [], "job": job, "chart": chart},
    )
    if job.get("status") == "running":
        page.headers["Refresh"] = "3"
    return page

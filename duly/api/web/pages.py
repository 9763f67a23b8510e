"""The web pages: login, a rep's inbox, a manager's alerts, instances and definitions.

Pages call the same services as the JSON API (duly/services/), so who may see and do what
is `duly/services/access.py` here too, and a refusal shows the service's own message. Forms are
plain HTML forms (`application/x-www-form-urlencoded`, read without a multipart parser); the
small scripts in /static/duly.js only add what needs a clock: countdowns, and alerts that
appear without a reload.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from duly.api.errors import http_status
from duly.api.web.ack import router as ack_router
from duly.api.web.login_limit import client_address, limiter_of
from duly.api.web.render import PAGE_ENV, context_of, open_alert_count, render, zone_chooser
from duly.api.web.session import (
    CSRF_FIELD,
    WebUser,
    check_csrf,
    check_login_challenge,
    close_session,
    csrf_token,
    end_session,
    login_challenge,
    open_session,
    safe_next,
    session_token,
    session_user,
    set_login_challenge,
    set_session,
    sign_in,
)
from duly.language import expressions
from duly.language.compiler import CompiledProcess
from duly.language.diagram import sla_text, step_kind
from duly.language.diagram_svg import svg
from duly.language.graph import transitions
from duly.language.model import FieldSpec, ProcessSpec, TaskStep
from duly.services import alerts as alert_service
from duly.services import definitions as definition_service
from duly.services import instances as instance_service
from duly.services import tasks as task_service
from duly.services.auth import Principal
from duly.services.errors import Invalid, NotAuthenticated, ServiceError
from duly.services.schemas import ALERT_STATES, CompleteTaskRequest, InstanceDetail, TaskView
from duly.store.models import Definition, Instance, Task
from duly.store.types import utc_now

router = APIRouter(include_in_schema=False)
router.include_router(ack_router)  # /ack/<token>: acknowledge links in notifications
log = structlog.get_logger(__name__)

MAX_FORM_FIELDS = 100
"""A form with more fields than this is refused (a task declares a handful)."""


# --- forms -------------------------------------------------------------------------------------


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields, the last value of each.

    Raises:
        ServiceError: Not an urlencoded form, or one with too many fields.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ServiceError(f"send this form as application/x-www-form-urlencoded, not {kind!r}")
    try:
        text = (await request.body()).decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServiceError(f"the form cannot be read: {exc}") from None
    return {name: values[-1] for name, values in fields.items()}


def field_values(form: dict[str, str], declared: dict[str, str]) -> dict[str, Any]:
    """The task fields a form fills in, as the types the step declares.

    A value that does not read as its type is passed on as text, so the workflow's check
    refuses it with its own message (`field 'budget' must be number, found 'lots'`); an empty
    one is left out, so the check says it is required.
    """
    values: dict[str, Any] = {}
    for name, kind in declared.items():
        raw = form.get(f"field.{name}")
        if kind == "boolean":
            values[name] = raw is not None and raw not in ("", "false", "off")
            continue
        if raw is None or raw.strip() == "":
            continue
        text = raw.strip()
        values[name] = _typed(text, kind)
    return values


def _typed(text: str, kind: str) -> Any:
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text.replace(",", ""))
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
    except ValueError:
        return text
    return text


# --- login -------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    """The login form (straight on to `next` when the session is still good)."""
    session_id = session_token(request)
    if session_id is not None:
        with context_of(request).read() as session:
            try:
                session_user(session=session, session_id=session_id)
                return RedirectResponse(safe_next(next), status_code=303)
            except NotAuthenticated:
                pass
    return _login_form(request, next=next)


def _login_form(
    request: Request,
    *,
    next: str,
    user_id: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    challenge = login_challenge(request)
    response = render(
        request,
        None,
        "login.html",
        {"next": safe_next(next), "challenge": challenge, "user_id": user_id, "error": error},
        status_code=status,
    )
    response.headers.update(headers or {})
    set_login_challenge(request, response, challenge)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with a user id and that user's API token; on to `next`.

    Failed sign-ins are limited per user id and per address (`login_limit`): over the limit,
    429 with `Retry-After`, and the token is not even checked.
    """
    form = await form_of(request)
    next_path = safe_next(form.get("next"))
    try:
        check_login_challenge(request, form.get("challenge"))
    except ServiceError as exc:
        return _login_form(request, next=next_path, error=exc.message, status=http_status(exc))
    user_id, token = form.get("user", ""), form.get("token", "")
    limiter, address = limiter_of(request), client_address(request)
    refusal = limiter.check(user_id, address)
    if refusal is not None:
        log.warning("sign_in_limited", user=user_id[:100], address=address, reason=refusal.reason)
        return _login_form(
            request,
            next=next_path,
            user_id=user_id,
            error=refusal.reason,
            status=429,
            headers={"Retry-After": str(refusal.retry_after)},
        )

    def start() -> str:
        with context_of(request).write() as session:
            principal = sign_in(session=session, user_id=user_id, token=token)
            return open_session(session=session, user_id=principal.id)

    try:
        session_id = await run_in_threadpool(start)
    except NotAuthenticated as exc:
        limiter.failed(user_id, address)
        log.info("sign_in_failed", user=user_id[:100], address=address)
        return _login_form(
            request, next=next_path, user_id=user_id, error=exc.message, status=http_status(exc)
        )
    limiter.succeeded(user_id)
    response = RedirectResponse(next_path, status_code=303)
    set_session(request, response, session_id)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session: its row is deleted, so its cookie signs nobody in again."""
    form = await form_of(request)
    check_csrf(request, form.get(CSRF_FIELD))
    session_id = session_token(request)
    if session_id is not None:

        def close() -> None:
            with context_of(request).write() as session:
                close_session(session=session, session_id=session_id)

        await run_in_threadpool(close)
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response)
    return response


@router.get("/")
def home(user: WebUser) -> Response:
    """The inbox is where everyone starts."""
    return RedirectResponse("/inbox", status_code=303)


# --- the inbox ---------------------------------------------------------------------------------


def _inbox(
    request: Request,
    user: Principal,
    *,
    scope: str = "mine",
    error: str | None = None,
    error_task: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    completed: str | None = None,
) -> HTMLResponse:
    context = context_of(request)
    now = utc_now()
    with context.read() as session:
        page = task_service.list_tasks(
            session=session,
            principal=user,
            definitions=context.definitions,
            scope="all" if scope == "all" else "mine",
            limit=200,
            now=now,
        )
        done = _completed_task(session, user, context.definitions, completed, now)
    # The engine has taken the completion; its close may be written a moment after this page
    # is drawn: the task is not offered again meanwhile
    tasks = [task for task in page.items if done is None or task.id != done.id]
    return render(
        request,
        user,
        "inbox.html",
        {
            "tasks": tasks,
            "total": page.total - (len(page.items) - len(tasks)),
            "scope": scope,
            "can_see_all": user.is_admin or bool(user.manages),
            "error": error,
            # shown on its task's card while the task is listed, else above the list
            "error_task": error_task if any(t.id == error_task for t in page.items) else None,
            "form": form or {},
            "field_specs": _field_specs(context.definitions, page.items),
            "completed": done,
            "now": now,
        },
        status_code=status,
    )


def _field_specs(definitions: Any, tasks: list[TaskView]) -> dict[str, dict[str, FieldSpec]]:
    """Each listed task's field declarations (options, required, help, default) by task id."""
    specs: dict[str, dict[str, FieldSpec]] = {}
    for task in tasks:
        process = definitions.processes.get(task.process)
        step = process.spec.steps.get(task.step) if process is not None else None
        if isinstance(step, TaskStep):
            specs[task.id] = dict(step.fields)
    return specs


def _completed_task(
    session: Session, user: Principal, definitions: Any, task_id: str | None, now: datetime
) -> TaskView | None:
    if not task_id:
        return None
    try:
        return task_service.get_task(
            session=session, principal=user, definitions=definitions, task_id=task_id, now=now
        )
    except ServiceError:
        return None


@router.get("/inbox", response_class=HTMLResponse)
def inbox(
    request: Request, user: WebUser, scope: str = "mine", completed: str | None = None
) -> HTMLResponse:
    """My open tasks, soonest due first: countdowns, outcomes, fields and a note."""
    return _inbox(request, user, scope=scope, completed=completed)


@router.post("/tasks/{task_id:path}/complete")
async def complete(task_id: str, request: Request, user: WebUser) -> Response:
    """Complete a task from the inbox's form; a refusal shows on the inbox with its reason."""
    form = await form_of(request)
    check_csrf(request, form.get(CSRF_FIELD))
    scope = form.get("scope", "mine")
    context = context_of(request)

    def declared() -> dict[str, str]:
        with context.read() as session:
            task = session.get(Task, task_id)
        return dict(task.fields) if task is not None else {}

    problem: ServiceError | None = None
    try:
        fields = field_values(form, await run_in_threadpool(declared))
        if not form.get("outcome"):
            raise Invalid("choose an outcome: press one of the task's outcome buttons")
        body = CompleteTaskRequest(
            outcome=form["outcome"], note=form.get("note") or None, fields=fields
        )
        result = await task_service.complete_task(context, user, task_id, body)
    except ServiceError as exc:
        problem = exc
    except ValidationError as exc:  # the request model refused it (a note too long, say)
        problem = Invalid("; ".join(error["msg"] for error in exc.errors()))
    if problem is not None:
        refused = problem
        return await run_in_threadpool(
            lambda: _inbox(
                request,
                user,
                scope=scope,
                error=refused.message,
                error_task=task_id,
                form=form,
                status=http_status(refused),
            )
        )
    target = f"/inbox?completed={quote(result.task_id, safe='')}"
    if scope == "all":
        target += "&scope=all"
    return RedirectResponse(target, status_code=303)


# --- alerts ------------------------------------------------------------------------------------


def _alert_rows(request: Request, user: Principal, state: str) -> tuple[list[Any], int]:
    with context_of(request).read() as session:
        page = alert_service.list_alerts(
            session=session,
            principal=user,
            state=state if state in ALERT_STATES else "open",  # type: ignore[arg-type]
            limit=200,
        )
    return list(page.items), page.total


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, user: WebUser, state: str = "open") -> HTMLResponse:
    """Breaches, warnings, escalations and failures, newest first; new ones appear by themselves."""
    state = state if state in ALERT_STATES else "open"
    rows, total = _alert_rows(request, user, state)
    return render(request, user, "alerts.html", {"alerts": rows, "total": total, "state": state})


@router.get("/alerts/live")
def alerts_live(request: Request, user: WebUser, state: str = "open") -> JSONResponse:
    """The alert list as the page shows it, for the page's script to swap in (polled).

    `html` is rendered here, by the same autoescaping template as the page, so the script
    never builds markup from alert text.
    """
    state = state if state in ALERT_STATES else "open"
    rows, total = _alert_rows(request, user, state)
    token = session_token(request)
    html = PAGE_ENV.get_template("_alert_rows.html").render(
        alerts=rows,
        csrf=csrf_token(token) if token else "",
        state=state,
        zone_for=zone_chooser(request, user),
    )
    return JSONResponse(
        {
            "ids": [row.id for row in rows],
            "total": total,
            "open": open_alert_count(request, user),
            "html": html,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/alerts/{alert_id}/ack")
async def ack(alert_id: int, request: Request, user: WebUser) -> Response:
    """Acknowledge an alert, then back to the list."""
    form = await form_of(request)
    check_csrf(request, form.get(CSRF_FIELD))
    state = form.get("state", "open")
    context = context_of(request)

    def acknowledge() -> None:
        with context.write() as session:
            alert_service.ack_alert(session=session, principal=user, alert_id=alert_id)

    await run_in_threadpool(acknowledge)
    state = state if state in ALERT_STATES else "open"
    return RedirectResponse(f"/alerts?state={state}", status_code=303)


# --- instances ---------------------------------------------------------------------------------


@router.get("/instances", response_class=HTMLResponse)
def instances_page(
    request: Request,
    user: WebUser,
    process: str | None = Query(default=None, max_length=100),
    status: str | None = Query(default=None, max_length=20),
) -> HTMLResponse:
    """Instances I may see, newest first."""
    context = context_of(request)
    status = status if status in ("running", "completed", "failed") else None
    process = process or None
    with context.read() as session:
        page = instance_service.list_instances(
            session=session,
            principal=user,
            definitions=context.definitions,
            process=process,
            status=status,
            limit=200,
        )
    return render(
        request,
        user,
        "instances.html",
        {
            "instances": page.items,
            "total": page.total,
            "process": process or "",
            "status": status or "",
            "processes": sorted(context.definitions.processes),
        },
    )


PAGE_STATE_WAIT = 1.5
"""Seconds an instance page waits for the live state. The rest of the page comes from the
store, so it answers in a second or two even while a burst of breaches holds the query back."""


@router.get("/instances/{instance_id:path}", response_class=HTMLResponse)
async def instance_page(instance_id: str, request: Request, user: WebUser) -> HTMLResponse:
    """One instance: its flowchart with the current step marked, its steps and SLA events."""
    context = context_of(request)
    detail = await instance_service.instance_detail(
        context, user, instance_id, wait=PAGE_STATE_WAIT
    )
    current = _current_step(detail)
    compiled = await run_in_threadpool(
        lambda: _process_as_run(request, detail.instance.process, detail.instance.version)
    )
    diagram = None
    if compiled is not None:
        diagram = svg(titled_for(compiled.spec, detail.instance.data), highlight=current)
    open_task = next((task for task in detail.tasks if task.status == "open"), None)
    return render(
        request,
        user,
        "instance.html",
        {
            "detail": detail,
            "instance": detail.instance,
            "current": current,
            "diagram": diagram,
            "title": compiled.spec.title if compiled else detail.instance.process,
            "open_task": open_task,
            "zone": zone_chooser(request, user)(detail.instance.process),
            "waiting": _waiting(detail),
            "current_summary": (
                step_kind(current, compiled.spec.steps[current])
                if compiled is not None and current in compiled.spec.steps
                else None
            ),
        },
    )


def titled_for(spec: ProcessSpec, data: dict[str, Any]) -> ProcessSpec:
    """The process with each step's title rendered on an instance's data, for its flowchart.

    Titles render in the same sandbox as everywhere else; one whose template fails keeps its
    raw text, so the flowchart still draws.
    """
    steps = {}
    for step_id, step in spec.steps.items():
        title = getattr(step, "title", None)
        if title and "{" in title:
            try:
                rendered = expressions.render(title, data)
            except expressions.ExpressionError:
                rendered = title
            step = step.model_copy(update={"title": rendered})
        steps[step_id] = step
    return spec.model_copy(update={"steps": steps})


def _waiting(detail: InstanceDetail) -> dict[str, Any] | None:
    """When a wait step wakes, and the event that would end it early, from the live state."""
    state = detail.state
    if state is None or state.wake_at is None:
        return None
    return {"at": state.wake_at, "event": state.wake_event}


def _current_step(detail: InstanceDetail) -> str | None:
    """The step an instance is at: its live state's, or else its open task's."""
    if detail.instance.status != "running":
        return None
    if detail.state is not None and detail.state.step is not None:
        return detail.state.step
    return next((task.step for task in detail.tasks if task.status == "open"), None)


def _process_as_run(request: Request, process: str, version: int) -> CompiledProcess | None:
    """The definition an instance runs: the loaded one if it is that version, else the stored."""
    definitions = context_of(request).definitions
    loaded = definitions.processes.get(process)
    if loaded is not None and loaded.version == version:
        return loaded
    with context_of(request).read() as session:
        row = session.exec(
            select(Definition).where(
                col(Definition.process) == process, col(Definition.version) == version
            )
        ).first()
    if row is None or not row.compiled_json:
        return loaded
    return CompiledProcess.model_validate_json(row.compiled_json)


# --- definitions -------------------------------------------------------------------------------


@router.get("/definitions", response_class=HTMLResponse)
def definitions_page(request: Request, user: WebUser) -> HTMLResponse:
    """Every process duly runs."""
    context = context_of(request)
    with context.read() as session:
        running = dict(
            session.exec(
                select(col(Instance.process), func.count())
                .where(col(Instance.status) == "running")
                .group_by(col(Instance.process))
            ).all()
        )
    return render(
        request,
        user,
        "definitions.html",
        {
            "definitions": definition_service.list_definitions(context.definitions),
            "running": running,
        },
    )


@router.get("/definitions/{process}", response_class=HTMLResponse)
def definition_page(process: str, request: Request, user: WebUser) -> HTMLResponse:
    """One process: its flowchart, steps and SLAs."""
    context = context_of(request)
    detail = definition_service.get_definition(context.definitions, process)
    compiled = context.definitions.processes[process]
    return render(
        request,
        user,
        "definition.html",
        {"definition": detail, "spec": compiled.spec, "steps": _step_rows(compiled)},
    )


def _step_rows(compiled: CompiledProcess) -> list[dict[str, Any]]:
    """Each step of a process: its kind, title, SLA and where it leads."""
    rows = []
    for step_id, step in compiled.spec.steps.items():
        sla = getattr(step, "sla", None)
        rows.append(
            {
                "id": step_id,
                "kind": step.kind,
                "summary": step_kind(step_id, step),
                "title": getattr(step, "title", None) or "",
                "sla": sla_text(sla) if sla is not None else "",
                "next": [(edge.label, edge.target) for edge in transitions(step)],
            }
        )
    return rows

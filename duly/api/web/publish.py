"""The admins' publish page: what publishing the folder changes, a button, and unheard events.

GET shows the plan (validated folder beside the published set) and the events no process heard,
and changes nothing; the buttons POST, with the session's CSRF token, through the same services
as `POST /api/publish` and `POST /api/unheard/replay`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from duly.api.errors import http_status
from duly.api.web.pages import form_of
from duly.api.web.render import context_of, render
from duly.api.web.session import CSRF_FIELD, WebUser, check_csrf
from duly.services import definitions as definition_service
from duly.services import unheard as unheard_service
from duly.services.errors import ServiceError

router = APIRouter(include_in_schema=False)

PAGE = "/admin/publish"


def _page(request: Request, user: Any, values: dict[str, Any], status: int = 200) -> HTMLResponse:
    context = context_of(request)
    try:
        plan: Any = definition_service.publish_plan(context)
        problem = values.pop("problem", None)
    except ServiceError as exc:  # the folder does not validate: say why, offer nothing
        plan, problem = None, values.pop("problem", None) or exc.message
    page = {
        "plan": plan,
        "problem": problem,
        "unheard": unheard_service.listed(context, pending_only=True),
        "done": None,
        **values,
    }
    return render(request, user, "publish.html", page, status_code=status)


@router.get(PAGE, response_class=HTMLResponse)
def publish_page(request: Request, user: WebUser) -> HTMLResponse:
    """What publishing the definitions folder changes, for admins."""
    definition_service.require_admin(user)
    return _page(request, user, {})


@router.post(PAGE)
async def publish_now(request: Request, user: WebUser) -> Response:
    """Publish the folder, all or nothing; a refusal is shown on the page with its reason."""
    form = await form_of(request)
    check_csrf(request, form.get(CSRF_FIELD))
    definition_service.require_admin(user)
    context = context_of(request)
    try:
        done = await run_in_threadpool(definition_service.publish, context, user)
    except ServiceError as exc:
        return await run_in_threadpool(
            _page, request, user, {"problem": exc.message}, http_status(exc)
        )
    return RedirectResponse(f"{PAGE}?published={done.published}", status_code=303)


@router.post("/admin/unheard/replay")
async def replay_unheard(request: Request, user: WebUser) -> Response:
    """Replay the kept events a published process now listens to."""
    form = await form_of(request)
    check_csrf(request, form.get(CSRF_FIELD))
    definition_service.require_admin(user)
    done = await unheard_service.replay(context_of(request))
    return RedirectResponse(f"{PAGE}?replayed={len(done)}", status_code=303)

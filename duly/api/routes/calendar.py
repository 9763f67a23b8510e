"""A user's calendar feed: `GET /calendar/<user>/<secret>.ics` (see `duly.calendar_feed`)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from duly.api.deps import Context
from duly.calendar_feed import feed, feed_owner
from duly.services.errors import NotFound

router = APIRouter(tags=["calendar"])


@router.get(
    "/calendar/{user}/{filename}",
    response_class=Response,
    include_in_schema=False,  # a URL for calendar apps, not part of the JSON API
)
async def calendar_feed(user: str, filename: str, context: Context) -> Response:
    """The user's open tasks as events at their due times (iCalendar).

    Anything but the user's current secret answers 404, the same as an unknown user.
    """
    secret = filename.removesuffix(".ics")

    def build() -> bytes | None:
        with context.read() as session:
            owner = feed_owner(
                session=session, settings=context.settings, user_id=user, secret=secret
            )
            if owner is None or not filename.endswith(".ics"):
                return None
            return feed(session=session, settings=context.settings, user=owner)

    document = await run_in_threadpool(build)
    if document is None:
        raise NotFound("no calendar feed here: ask duly for your feed's current URL")
    return Response(
        document,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, max-age=300"},
    )

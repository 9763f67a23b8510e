"""The current user."""

from __future__ import annotations

from fastapi import APIRouter

from duly.api.deps import CurrentUser
from duly.api.routes import problems
from duly.api.schemas import Me

router = APIRouter(tags=["me"])


@router.get("/api/me", response_model=Me, responses=problems(401))
def me(user: CurrentUser) -> Me:
    """Who the token belongs to: role, teams they belong to and teams they manage."""
    return Me(
        id=user.id,
        name=user.name,
        role=user.role,
        member_of=list(user.member_of),
        manages=list(user.manages),
    )

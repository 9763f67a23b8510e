"""API tokens and the user a request acts as.

Each user has at most one API token. `issue_token` makes a new random one (replacing any
earlier one, and ending the user's web sessions) and stores only its SHA-256: the token itself
is shown once, to the person who issued it (`duly token USER`). A plain hash suffices because
tokens are 256 random bits, not passwords a person chose: there is nothing to guess, so nothing
for a slow hash to slow down.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from sqlmodel import Session, col, delete, select

from duly.services.errors import NotAuthenticated, NotFound
from duly.store.models import Team, TeamMember, User, WebSession

TOKEN_PREFIX = "duly_"
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, with what their role lets them see.

    Attributes:
        id: The user id (org.yaml's key).
        name: Their name.
        role: `rep`, `manager` or `admin`.
        member_of: The active teams they are a member of.
        manages: The active teams they manage.
        managed_members: The active members of the teams they manage.
    """

    id: str
    name: str
    role: str
    member_of: tuple[str, ...] = ()
    manages: tuple[str, ...] = ()
    managed_members: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        """Admins see and do everything."""
        return self.role == "admin"

    @property
    def is_manager(self) -> bool:
        """Managers see their teams' work and may reassign it."""
        return self.role == "manager"

    def oversees(self, user_id: str | None) -> bool:
        """Whether this is the user themself, or a member of a team this principal manages."""
        return user_id is not None and (user_id == self.id or user_id in self.managed_members)


def new_token() -> str:
    """A fresh random API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_token(*, session: Session, user_id: str) -> str:
    """Give a user a new API token, replacing their old one; the caller commits.

    The user's web sessions end with it: whoever signed in with the old token (or took over a
    session made with it) is signed out.

    Args:
        session: A session in a transaction that writes.
        user_id: The user (from org.yaml).

    Returns:
        The token: show it once, it is not stored.

    Raises:
        NotFound: No active user has this id.
    """
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise NotFound(
            f"no active user '{user_id}': users come from definitions/org.yaml "
            "(run `duly up` or `duly worker` once after adding them)"
        )
    token = new_token()
    user.token_hash = hash_token(token)
    session.add(user)
    session.exec(delete(WebSession).where(col(WebSession.user_id) == user_id))
    return token


def authenticate(*, session: Session, token: str | None) -> Principal:
    """The principal a bearer token belongs to.

    Raises:
        NotAuthenticated: No token, or none that belongs to an active user.
    """
    if not token:
        raise NotAuthenticated(
            "missing API token: send 'Authorization: Bearer <token>' (a user gets one with "
            "`duly token USER`)"
        )
    user = session.exec(select(User).where(User.token_hash == hash_token(token))).first()
    if user is None:
        raise NotAuthenticated(
            "invalid API token: it is not (or no longer) any user's; issue a new one with "
            "`duly token USER`"
        )
    if not user.active:
        raise NotAuthenticated(f"user '{user.id}' is no longer in org.yaml")
    return principal_for(session=session, user=user)


def principal_of(*, session: Session, user_id: str) -> Principal:
    """The principal of an active user by id (the CLI's `--as USER`).

    Raises:
        NotFound: No active user has this id.
    """
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise NotFound(f"no active user '{user_id}' in org.yaml")
    return principal_for(session=session, user=user)


def default_admin(*, session: Session) -> Principal:
    """The first active admin by id: who the CLI acts as unless told otherwise.

    Raises:
        NotFound: org.yaml has no admin.
    """
    user = session.exec(
        select(User).where(User.role == "admin", col(User.active)).order_by(col(User.id))
    ).first()
    if user is None:
        raise NotFound("org.yaml names no admin: pass --as USER to say who you act as")
    return principal_for(session=session, user=user)


def principal_for(*, session: Session, user: User) -> Principal:
    """A user's principal: their role, teams, and the people of the teams they manage."""
    member_of = session.exec(
        select(TeamMember.team_id)
        .join(Team, col(Team.id) == col(TeamMember.team_id))
        .where(TeamMember.user_id == user.id, col(Team.active))
        .order_by(col(TeamMember.team_id))
    ).all()
    manages = session.exec(
        select(Team.id).where(Team.manager == user.id, col(Team.active)).order_by(col(Team.id))
    ).all()
    members = (
        session.exec(
            select(TeamMember.user_id)
            .join(User, col(User.id) == col(TeamMember.user_id))
            .where(col(TeamMember.team_id).in_(manages), col(User.active))
        ).all()
        if manages
        else []
    )
    return Principal(
        id=user.id,
        name=user.name,
        role=user.role,
        member_of=tuple(member_of),
        manages=tuple(manages),
        managed_members=frozenset(members),
    )

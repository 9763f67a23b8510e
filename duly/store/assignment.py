"""Who gets the work: users, teams, managers, fair rotation and least-loaded picks.

Picks that depend on what others picked (the rotation, open-task counts) must run inside a
`duly.store.db.write_session`: `lock_team` then serialises them per team on PostgreSQL, and on
SQLite the whole transaction already holds the write lock.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select, update

from duly.store.crud import insert_if_absent
from duly.store.models import Rotation, Task, Team, TeamMember, User


class AssignmentError(Exception):
    """A rule names a user or team that cannot take work; retrying will not help."""


# Asked for every task opened and every rung: built once, with the user or team as a parameter
_ACTIVE_USER = select(User.id).where(User.id == bindparam("user"), col(User.active))
_MEMBER_OF = (
    select(TeamMember.team_id)
    .join(Team, col(Team.id) == col(TeamMember.team_id))
    .where(TeamMember.user_id == bindparam("user"), col(Team.active))
    .order_by(col(TeamMember.team_id))
)
_MANAGES = (
    select(Team.id)
    .where(Team.manager == bindparam("user"), col(Team.active))
    .order_by(col(Team.id))
)
_MANAGER = select(Team.manager).where(Team.id == bindparam("team"), col(Team.active))


def is_active_user(*, session: Session, user_id: str) -> bool:
    """Whether an active user has this id."""
    return session.exec(_ACTIVE_USER, params={"user": user_id}).first() is not None


def require_user(*, session: Session, user_id: str) -> str:
    """The id of an active user.

    Raises:
        AssignmentError: No active user has this id.
    """
    if not is_active_user(session=session, user_id=user_id):
        raise AssignmentError(
            f"no active user '{user_id}' in org.yaml; add them under users (or fix the id)"
        )
    return user_id


def team_members(*, session: Session, team: str) -> list[str]:
    """The active members of an active team, in round-robin order.

    Raises:
        AssignmentError: The team is unknown or inactive, or has no active members.
    """
    row = session.get(Team, team)
    if row is None or not row.active:
        raise AssignmentError(f"no team '{team}' in org.yaml; add it under teams (or fix the id)")
    members = list(
        session.exec(
            select(TeamMember.user_id)
            .join(User, col(User.id) == col(TeamMember.user_id))
            .where(TeamMember.team_id == team, col(User.active))
            .order_by(col(TeamMember.position))
        )
    )
    if not members:
        raise AssignmentError(f"team '{team}' has no active members to take the task")
    return members


def teams_of(*, session: Session, user_id: str) -> list[str]:
    """The active teams a user is a member of, then those they manage, each by id."""
    member_of = session.exec(_MEMBER_OF, params={"user": user_id})
    manages = session.exec(_MANAGES, params={"user": user_id})
    return list(dict.fromkeys([*member_of, *manages]))


def manager_of_team(*, session: Session, team: str | None) -> str | None:
    """The manager of an active team, or None."""
    return session.exec(_MANAGER, params={"team": team}).first() if team else None


def manager_of(*, session: Session, user_id: str | None, team: str | None = None) -> str | None:
    """The manager of a user's team: `team` when given (the task's team), else their first.

    With no user, the manager of `team`.
    """
    if team is None and user_id is not None:
        team = next(iter(teams_of(session=session, user_id=user_id)), None)
    return manager_of_team(session=session, team=team)


def skip_level_of(*, session: Session, manager: str) -> str | None:
    """The manager's own manager: of the first active team the manager is a member of.

    Teams the manager runs do not count (their manager is themselves).
    """
    rows = session.exec(
        select(Team.manager)
        .join(TeamMember, col(TeamMember.team_id) == col(Team.id))
        .where(TeamMember.user_id == manager, col(Team.active), Team.manager != manager)
        .order_by(col(Team.id))
    )
    return next(iter(rows), None)


def users_with_role(*, session: Session, role: str) -> list[str]:
    """The active users with a role (rep, manager or admin), by id."""
    return list(
        session.exec(
            select(User.id).where(User.role == role, col(User.active)).order_by(col(User.id))
        )
    )


def lock_team(*, session: Session, team: str) -> Rotation:
    """Lock a team's rotation row for the rest of the transaction, creating it if needed.

    Every pick over a team takes this lock first, so two workers picking for the same team take
    turns instead of reading the same position or the same open-task counts.
    """
    insert_if_absent(session=session, row=Rotation(team_id=team, next_index=0))
    return session.exec(
        select(Rotation)
        .where(Rotation.team_id == team)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def next_in_rotation(*, session: Session, team: str, exclude: str | None = None) -> str:
    """The team's next member in turn; the position advances durably with the transaction.

    Args:
        session: A write session (see the module's docstring).
        team: The team id.
        exclude: Skip this member once if it is their turn (a reassignment away from them),
            unless they are the only member.

    Raises:
        AssignmentError: The team is unknown or has no active members.
    """
    members = team_members(session=session, team=team)
    rotation = lock_team(session=session, team=team)
    index = rotation.next_index
    if exclude is not None and len(members) > 1 and members[index % len(members)] == exclude:
        index += 1
    session.exec(update(Rotation).where(col(Rotation.team_id) == team).values(next_index=index + 1))
    return members[index % len(members)]


def least_loaded(*, session: Session, team: str, exclude: str | None = None) -> str:
    """The team's member with the fewest open tasks; ties go to the earlier position.

    Raises:
        AssignmentError: The team is unknown or has no active members.
    """
    members = team_members(session=session, team=team)
    lock_team(session=session, team=team)
    candidates = [m for m in members if m != exclude] or members
    counts = dict(
        session.exec(
            select(Task.assignee, func.count())
            .where(col(Task.assignee).in_(candidates), Task.status == "open")
            .group_by(col(Task.assignee))
        ).all()
    )
    return min(candidates, key=lambda member: (counts.get(member, 0), candidates.index(member)))

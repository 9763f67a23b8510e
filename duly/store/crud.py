"""Writes shared by activities and tools: idempotent inserts, definitions, the org.

Functions take keyword arguments only and work inside the caller's session and transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, SQLModel, col, select

from duly.language.compiler import CompiledProcess
from duly.language.model import Channels, OrgSpec
from duly.store.models import Definition, Team, TeamMember, User, UserChannel


class VersionConflict(Exception):
    """A (process, version) is already stored with different content."""

    def __init__(self, process: str, version: int) -> None:
        super().__init__(
            f"process {process} version {version} is already stored with different content; "
            "raise `version:` to publish a change"
        )
        self.process = process
        self.version = version


def insert_if_absent(*, session: Session, row: SQLModel) -> bool:
    """Insert `row` unless a row with the same primary or unique key exists; True if inserted.

    This is how every activity stays idempotent under retries: the second attempt's insert
    meets the first attempt's row and does nothing. SQLite and PostgreSQL run
    `INSERT ... ON CONFLICT DO NOTHING`; other databases insert in a savepoint instead.

    Args:
        session: The session (and transaction) to insert in.
        row: A table model instance; an autoincrement id left as None is assigned by the
            database.
    """
    table = cast(Table, type(row).__table__)  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for column in table.columns:
        value = getattr(row, column.name)
        if value is None and column.primary_key:
            continue  # autoincrement
        values[column.name] = value
    return insert_values_if_absent(session=session, table=table, values=values)


def insert_values_if_absent(*, session: Session, table: Table, values: dict[str, Any]) -> bool:
    """`insert_if_absent` from the row's values: every column of `table` but an autoincrement id.

    For rows nothing reads back, such as facts and SLA events: building a table model's
    object costs more than its insert.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        try:
            with session.begin_nested():
                session.exec(table.insert().values(values))
        except IntegrityError:
            return False
        return True
    # The values go as the parameters of one statement per table, compiled once per column set
    inserted = session.exec(_insert_or_nothing(table, dialect), params=values)
    return inserted.first() is not None


@functools.lru_cache(maxsize=64)
def _insert_or_nothing(table: Table, dialect: str) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING RETURNING <primary key>` into `table`.

    Its columns are those of the parameters it runs with. RETURNING tells inserted from
    skipped on both databases; rowcount is not reliable for it.
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


# --- definitions -------------------------------------------------------------------------------


def store_definition(
    *,
    session: Session,
    process: str,
    version: int,
    hash: str,
    source: str = "",
    compiled_json: str = "",
) -> Definition:
    """Keep one (process, version) with its content, once.

    Raises:
        VersionConflict: The same process and version is stored with another hash.
    """
    row = Definition(
        process=process, version=version, hash=hash, source=source, compiled_json=compiled_json
    )
    insert_if_absent(session=session, row=row)
    stored = session.exec(
        select(Definition).where(Definition.process == process, Definition.version == version)
    ).one()
    if stored.hash != hash:
        raise VersionConflict(process, version)
    if compiled_json and not stored.compiled_json:
        # an earlier writer had only the hash; fill in the content it pins
        stored.source, stored.compiled_json = source, compiled_json
        session.add(stored)
    return stored


def save_definition(*, session: Session, compiled: CompiledProcess) -> Definition:
    """Store a compiled process once per (process, version).

    Raises:
        VersionConflict: The same process and version is stored with different content.
    """
    return store_definition(
        session=session,
        process=compiled.name,
        version=compiled.version,
        hash=compiled.hash,
        source=compiled.source,
        compiled_json=compiled.model_dump_json(),
    )


class VersionConflicts(Exception):
    """Some processes changed without a new `version:`; nothing was published."""

    def __init__(self, conflicts: list[tuple[CompiledProcess, VersionConflict]]) -> None:
        self.conflicts = conflicts
        super().__init__(
            "\n".join(f"{process.file}: {conflict}" for process, conflict in conflicts)
        )


def publish_definitions(*, session: Session, processes: Iterable[CompiledProcess]) -> None:
    """Store every (process, version, hash) not stored yet, all or nothing.

    A running instance keeps the definition it started with; a new one takes what is published
    now. Reusing a version number for changed content is refused, naming each such file.

    Raises:
        VersionConflicts: Some process changed without raising its version; the caller's
            transaction must be rolled back (nothing of this call is kept).
    """
    conflicts: list[tuple[CompiledProcess, VersionConflict]] = []
    for process in processes:
        try:
            save_definition(session=session, compiled=process)
        except VersionConflict as conflict:
            conflicts.append((process, conflict))
    if conflicts:
        raise VersionConflicts(conflicts)


# --- the org -----------------------------------------------------------------------------------


def sync_org(*, session: Session, org: OrgSpec) -> None:
    """Make the users, their channels, teams and memberships match org.yaml.

    Users and teams no longer in org.yaml become inactive, never deleted, so their tasks,
    alerts and facts keep pointing at them; a user who comes back is active again. Team members
    are replaced with the file's list, in its order (the round-robin order), and each user's
    notification channels with the file's (a user who left has none).
    """
    for user_id, spec in org.users.items():
        insert_if_absent(session=session, row=User(id=user_id, name=spec.name))
        user = session.get_one(User, user_id)
        user.name, user.email, user.role, user.active = spec.name, spec.email, spec.role, True
        user.timezone = spec.timezone
        session.add(user)
    for user in session.exec(select(User).where(col(User.id).not_in(list(org.users)))):
        user.active = False
        session.add(user)
    session.flush()  # managers must exist before teams name them
    session.exec(delete(UserChannel).where(col(UserChannel.user_id).not_in(list(org.users))))
    for user_id, spec in org.users.items():
        _sync_channels(session, user_id, spec.channels)
        if org.slack is not None and spec.slack_id:  # the Slack app replaces a Slack webhook
            _set_channel(session, user_id, "slack", spec.slack_id, org.slack.bot_token)

    for team_id, team_spec in org.teams.items():
        name = team_spec.name or team_id
        insert_if_absent(
            session=session, row=Team(id=team_id, name=name, manager=team_spec.manager)
        )
        team = session.get_one(Team, team_id)
        team.name, team.manager, team.active = name, team_spec.manager, True
        session.add(team)
        session.flush()
        _sync_members(session, team_id, team_spec.members)
    for team in session.exec(select(Team).where(col(Team.id).not_in(list(org.teams)))):
        team.active = False
        session.add(team)
        session.exec(delete(TeamMember).where(col(TeamMember.team_id) == team.id))
    session.flush()


def _sync_members(session: Session, team_id: str, members: list[str]) -> None:
    session.exec(
        delete(TeamMember).where(
            col(TeamMember.team_id) == team_id, col(TeamMember.user_id).not_in(members)
        )
    )
    for position, user_id in enumerate(members):
        row = TeamMember(team_id=team_id, user_id=user_id, position=position)
        if not insert_if_absent(session=session, row=row):
            member = session.get_one(TeamMember, (team_id, user_id))
            member.position = position
            session.add(member)


def _sync_channels(session: Session, user_id: str, channels: Channels) -> None:
    wanted: dict[str, tuple[str, str | None]] = {}
    if channels.email:
        wanted["email"] = (channels.email, None)
    if channels.slack:
        wanted["slack"] = (channels.slack, None)
    if channels.webhook:
        wanted["webhook"] = (channels.webhook.url, channels.webhook.secret_env)
    session.exec(
        delete(UserChannel).where(
            col(UserChannel.user_id) == user_id, col(UserChannel.channel).not_in(list(wanted))
        )
    )
    for channel, (target, secret_env) in wanted.items():
        _set_channel(session, user_id, channel, target, secret_env)


def _set_channel(
    session: Session, user_id: str, channel: str, target: str, secret_env: str | None
) -> None:
    row = UserChannel(user_id=user_id, channel=channel, target=target, secret_env=secret_env)
    if not insert_if_absent(session=session, row=row):
        stored = session.get_one(UserChannel, (user_id, channel))
        stored.target, stored.secret_env = target, secret_env
        session.add(stored)

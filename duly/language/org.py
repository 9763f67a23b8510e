"""Checks on definitions/org.yaml: known users in teams, real time zones for people."""

from __future__ import annotations

from duly.language.errors import Problem
from duly.language.model import OrgSpec
from duly.language.source import Source
from duly.language.validation import did_you_mean
from duly.timefmt import zone


def check_org(org: OrgSpec, source: Source) -> list[Problem]:
    """Problems with the people a team names, and with each person's `timezone:`."""
    problems: list[Problem] = []
    users = list(org.users)

    def user_ref(path: tuple[str | int, ...], user: str) -> None:
        if user not in org.users:
            hint = did_you_mean(user, users)
            problems.append(source.problem(path, f"unknown user '{user}' (not under users){hint}"))

    for user_id, user in org.users.items():
        if user.timezone is not None and zone(user.timezone) is None:
            problems.append(
                source.problem(
                    ("users", user_id, "timezone"),
                    f"unknown time zone '{user.timezone}': use an IANA name such as "
                    "America/New_York or Europe/Lisbon",
                )
            )
    for team_id, team in org.teams.items():
        user_ref(("teams", team_id, "manager"), team.manager)
        for index, member in enumerate(team.members):
            user_ref(("teams", team_id, "members", index), member)
    return problems


def manager_of(org: OrgSpec, user: str) -> str | None:
    """The manager of the first team a user belongs to (or manages)."""
    for team in org.teams.values():
        if user in team.members or user == team.manager:
            return team.manager
    return None

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
    return problems + check_crm_ids(org, source) + check_slack_ids(org, source)


def check_slack_ids(org: OrgSpec, source: Source) -> list[Problem]:
    """A `slack_id` needs the org's Slack app, and names one person only."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for user_id, user in org.users.items():
        if not user.slack_id:
            continue
        path = ("users", user_id, "slack_id")
        if org.slack is None:
            problems.append(
                source.problem(
                    path,
                    "slack_id needs the org's Slack app: add `slack: {bot_token: DULY_..., "
                    "signing_secret: DULY_...}` at the top of org.yaml (see docs/connect.md)",
                )
            )
        if user.slack_id in seen:
            problems.append(
                source.problem(path, f"slack_id {user.slack_id} is also {seen[user.slack_id]}'s")
            )
        seen.setdefault(user.slack_id, user_id)
    return problems


def manager_of(org: OrgSpec, user: str) -> str | None:
    """The manager of the first team a user belongs to (or manages)."""
    for team in org.teams.values():
        if user in team.members or user == team.manager:
            return team.manager
    return None


def check_crm_ids(org: OrgSpec, source: Source) -> list[Problem]:
    """Problems with owner ids: one CRM id naming two users would assign at random."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}
    for user_id, user in org.users.items():
        for crm, crm_id in user.crm_ids.items():
            other = seen.setdefault((crm, crm_id), user_id)
            if other != user_id:
                problems.append(
                    source.problem(
                        ("users", user_id, "crm_ids", crm),
                        f"{crm} id '{crm_id}' is also {other}'s; each CRM owner id names one user",
                    )
                )
    return problems


def user_for_crm_id(org: OrgSpec, crm: str, crm_id: str) -> str | None:
    """The user whose `crm_ids[crm]` is `crm_id`, or None when nobody's is."""
    for user_id, user in org.users.items():
        if user.crm_ids.get(crm) == crm_id:
            return user_id
    return None

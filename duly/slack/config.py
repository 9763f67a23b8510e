"""The org's Slack app: its secrets (read from the variables org.yaml names), and who is who."""

from __future__ import annotations

import os
from dataclasses import dataclass

from duly.language.model import OrgSpec


class SlackNotConfigured(Exception):
    """The org has no Slack app, or a variable it names is not set; the message says which."""


@dataclass(frozen=True)
class SlackSecrets:
    """The app's bot token and signing secret, read from the environment."""

    bot_token: str
    signing_secret: str


def secret(variable: str, what: str) -> str:
    """The value of the environment variable `variable`, which org.yaml names for `what`.

    Raises:
        SlackNotConfigured: It is not set.
    """
    value = os.environ.get(variable, "")
    if not value:
        raise SlackNotConfigured(
            f"the environment variable {variable} ({what} of the Slack app in org.yaml) is "
            "not set where duly runs; set it to the value from the app's settings page"
        )
    return value


def secrets(org: OrgSpec) -> SlackSecrets:
    """The org's Slack app secrets.

    Raises:
        SlackNotConfigured: org.yaml has no `slack:`, or a variable it names is unset.
    """
    if org.slack is None:
        raise SlackNotConfigured("org.yaml has no `slack:` app settings")
    return SlackSecrets(
        bot_token=secret(org.slack.bot_token, "bot_token"),
        signing_secret=secret(org.slack.signing_secret, "signing_secret"),
    )


def user_for(org: OrgSpec, slack_id: str) -> str | None:
    """The org.yaml user whose `slack_id` is `slack_id`, if any."""
    for user_id, spec in org.users.items():
        if spec.slack_id and spec.slack_id == slack_id:
            return user_id
    return None

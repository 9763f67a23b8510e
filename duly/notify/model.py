"""One notification, said once: `Message`, which every channel renders (`duly.notify.render`).

A message is data, never markup: each renderer escapes it for its own channel (nothing for
plain text, HTML entities for email, Slack's three characters for Slack), so a lead called
`<script>` shows as typed everywhere and every channel says the same thing.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Fact(BaseModel):
    """A labelled line: `Due: 2026-11-20 17:00 EST`."""

    label: str
    value: str


class Action(BaseModel):
    """A link people follow: open the instance, acknowledge the alert."""

    label: str
    url: str
    primary: bool = False


class Section(BaseModel):
    """A titled list of lines (the weekly summary's parts)."""

    title: str
    lines: list[str] = Field(default_factory=list)
    links: list[str | None] = Field(
        default_factory=list, description="a URL per line, or None; for HTML links"
    )


class Message(BaseModel):
    """What one notification says, whatever the channel.

    Attributes:
        kind: What happened: `task.assigned`, `alert.breach`, `summary.weekly`...
        label: The kind in a word for people: Breach, Warning, New task...
        subject: One line: the email subject, Slack's fallback text.
        headline: What it is about (the task's title, rendered for the instance).
        summary: One or two sentences: what happened and what to do.
        facts: Who, what, which record, when due, how late, which rung.
        sections: Longer lists (the weekly summary).
        actions: Links: the instance, the acknowledge page.
        footer: Why the reader gets this.
    """

    kind: str
    label: str
    subject: str
    headline: str
    summary: str = ""
    facts: list[Fact] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)
    footer: str = ""

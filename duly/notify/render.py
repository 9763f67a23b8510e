"""A `Message` for each channel: plain text, an HTML email, a Slack Block Kit message.

The three say the same: the label and headline, the summary, the facts, the sections and the
links. HTML has inline styles only (mail clients drop `<style>` and remote sheets) and no
images; links are plain `<a>` elements styled as buttons. Slack gets Block Kit blocks (header,
section fields, buttons with URLs) and a `text` fallback for notifications, each value escaped
as Slack documents (`&`, `<`, `>`).
"""

from __future__ import annotations

from html import escape
from typing import Any

from duly.notify.model import Message

ACCENTS = {
    "Breach": "#c62828",
    "Escalation": "#ad1457",
    "Reassigned": "#6a1b9a",
    "Warning": "#b26a00",
    "Failure": "#c62828",
}
"""The colour of the label by kind; anything else is duly's blue."""
DEFAULT_ACCENT = "#1565c0"
SLACK_FIELDS = 10  # Block Kit allows at most ten fields in a section
SLACK_HEADER = 150  # ... and a header's text at most 150 characters


def text(message: Message) -> str:
    """The plain-text body."""
    lines = [f"{message.label}: {message.headline}", ""]
    if message.summary:
        lines += [message.summary, ""]
    if message.facts:
        width = max(len(fact.label) for fact in message.facts) + 1
        lines += [f"{(fact.label + ':').ljust(width)} {fact.value}" for fact in message.facts]
        lines.append("")
    for section in message.sections:
        lines.append(section.title)
        for index, line in enumerate(section.lines):
            lines.append(f"  {line}")
            link = section.links[index] if index < len(section.links) else None
            if link:
                lines.append(f"    {link}")
        if not section.lines:
            lines.append("  —")
        lines.append("")
    for action in message.actions:
        lines.append(f"{action.label}: {action.url}")
    if message.actions:
        lines.append("")
    if message.footer:
        lines += ["--", message.footer]
    return "\n".join(lines).rstrip("\n") + "\n"


def html(message: Message) -> str:
    """The HTML email: a card with inline styles, every value escaped, no remote content."""
    accent = ACCENTS.get(message.label, DEFAULT_ACCENT)
    e = escape
    parts = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8"><title>' + e(message.subject) + "</title></head>",
        '<body style="margin:0;padding:16px;background:#f5f7fa;'
        'font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2933">',
        '<div style="max-width:640px;margin:0 auto;background:#ffffff;border:1px solid #d9e2ec;'
        f'border-top:4px solid {accent};border-radius:6px;padding:20px">',
        f'<p style="margin:0 0 4px;font-size:12px;font-weight:700;letter-spacing:.05em;'
        f'text-transform:uppercase;color:{accent}">{e(message.label)}</p>',
        f'<h1 style="margin:0 0 12px;font-size:20px;line-height:1.3">{e(message.headline)}</h1>',
    ]
    if message.summary:
        parts.append(f'<p style="margin:0 0 16px;line-height:1.5">{e(message.summary)}</p>')
    if message.facts:
        parts.append(
            '<table role="presentation" style="border-collapse:collapse;width:100%;'
            'margin:0 0 16px">'
        )
        for fact in message.facts:
            parts.append(
                '<tr><th style="text-align:left;vertical-align:top;padding:4px 12px 4px 0;'
                f'width:1%;color:#52606d;font-weight:600;white-space:nowrap">{e(fact.label)}</th>'
                f'<td style="padding:4px 0">{e(fact.value)}</td></tr>'
            )
        parts.append("</table>")
    for section in message.sections:
        parts.append(f'<h2 style="margin:16px 0 8px;font-size:16px">{e(section.title)}</h2>')
        if not section.lines:
            parts.append('<p style="margin:0;color:#52606d">—</p>')
            continue
        parts.append('<ul style="margin:0;padding-left:20px;line-height:1.5">')
        for index, line in enumerate(section.lines):
            link = section.links[index] if index < len(section.links) else None
            item = f'<a href="{e(link)}" style="color:#1565c0">{e(line)}</a>' if link else e(line)
            parts.append(f"<li>{item}</li>")
        parts.append("</ul>")
    if message.actions:
        parts.append('<p style="margin:16px 0 0">')
        for action in message.actions:
            colours = (
                "background:#1565c0;color:#ffffff;border:1px solid #1565c0"
                if action.primary
                else "background:#ffffff;color:#1565c0;border:1px solid #1565c0"
            )
            parts.append(
                f'<a href="{e(action.url)}" style="display:inline-block;margin:0 8px 8px 0;'
                f"padding:8px 14px;border-radius:4px;text-decoration:none;font-weight:600;"
                f'{colours}">{e(action.label)}</a>'
            )
        parts.append("</p>")
    if message.footer:
        parts.append(
            '<p style="margin:16px 0 0;font-size:12px;color:#7b8794">' + e(message.footer) + "</p>"
        )
    parts += ["</div>", "</body></html>"]
    return "\n".join(parts) + "\n"


def slack_escape(value: str) -> str:
    """Escape the three characters Slack reads as markup, so a value shows as typed."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(message: Message) -> dict[str, Any]:
    """The Slack message: Block Kit `blocks` and a plain `text` fallback (notifications)."""
    s = slack_escape
    header = f"{message.label}: {message.headline}"
    if len(header) > SLACK_HEADER:
        header = header[: SLACK_HEADER - 1] + "…"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
    ]
    if message.summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": s(message.summary)}})
    facts = message.facts
    for start in range(0, len(facts), SLACK_FIELDS):
        fields = [
            {"type": "mrkdwn", "text": f"*{s(fact.label)}*\n{s(fact.value)}"}
            for fact in facts[start : start + SLACK_FIELDS]
        ]
        blocks.append({"type": "section", "fields": fields})
    for section in message.sections:
        body = "\n".join(f"• {s(line)}" for line in section.lines) or "—"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{s(section.title)}*\n{body}"}}
        )
    if message.actions:
        buttons: list[dict[str, Any]] = []
        for action in message.actions:
            button: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": action.label},
                "url": action.url,
            }
            if action.primary:
                button["style"] = "primary"
            buttons.append(button)
        blocks.append({"type": "actions", "elements": buttons})
    if message.footer:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": s(message.footer)}]}
        )
    return {"text": s(text(message)), "blocks": blocks}

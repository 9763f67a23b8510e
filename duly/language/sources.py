"""Sources: definitions/sources/<name>.yaml, how a CRM's webhooks become duly events.

A source names its CRM (whose own signature scheme guards its endpoint), where its secret comes
from (the *name* of a `DULY_*` environment variable, never the secret), and, per kind of CRM
object, the events its changes become: each rule's `when:` picks the change, and its `type`,
`id`, `occurred_at`, `owner` and `data` are templates in the same sandbox as processes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from duly.language.errors import Problem, YamlPath
from duly.language.expressions import expression_problem, template_problem
from duly.language.model import EVENT_PATTERN, ID_PATTERN, Expression, Spec, Template
from duly.language.source import Source

CRMS = ("hubspot", "salesforce", "pipedrive", "standard-webhooks", "duly")
Crm = Literal["hubspot", "salesforce", "pipedrive", "standard-webhooks", "duly"]
SECRET_NAME = r"^DULY_[A-Z0-9_]+$"
SECRET_IS = {
    "hubspot": "the app's client secret (it signs X-HubSpot-Signature-v3)",
    "salesforce": "the shared secret a Flow HTTP callout sends in `secret_header`",
    "pipedrive": "the webhook's HTTP Basic credentials, as user:password",
    "standard-webhooks": "the endpoint's signing secret, whsec_<base64>",
    "duly": "the shared HMAC secret, as for /api/events",
}


class EventRule(Spec):
    """One duly event a CRM change becomes, when `when` holds (the first rule that holds wins)."""

    when: Expression | None = Field(
        default=None,
        description="which changes this rule takes, e.g. change == 'created'; absent: every one",
    )
    type: str = Field(pattern=EVENT_PATTERN, description="the duly event type, e.g. lead.created")
    id: Template | None = Field(
        default=None,
        description="the event id; absent: the key the CRM documents as unique for the change",
    )
    occurred_at: Template | None = Field(
        default=None,
        description="when it happened (ISO 8601); absent: the CRM's own timestamp of the change",
    )
    owner: Template | None = Field(
        default=None,
        description="the CRM owner id; mapped to a user by crm_ids in org.yaml into data.owner "
        "(unmapped: no owner, so the process's fallback applies)",
    )
    data: dict[str, Any] = Field(
        default_factory=dict, description="the event's data: text with {{ placeholders }}"
    )


class ObjectRules(Spec):
    """What changes of one kind of CRM object become."""

    fetch: list[str] = Field(
        default_factory=list,
        description="HubSpot only: properties read from its CRM API (DULY_HUBSPOT_TOKEN) into "
        "`record` before mapping, for fields the webhook does not carry",
    )
    events: list[EventRule] = Field(min_length=1)


class SourceSpec(Spec):
    """A source file: definitions/sources/<source>.yaml, served at POST /api/sources/<source>."""

    source: str = Field(pattern=ID_PATTERN, description="its name: the endpoint's last part")
    title: str | None = None
    crm: Crm = Field(description="whose webhooks, signed in its own documented scheme")
    secret: str | None = Field(
        default=None,
        pattern=SECRET_NAME,
        description="the NAME of the DULY_* environment variable holding the secret, never it",
    )
    url: str | None = Field(
        default=None,
        description="HubSpot: the target URL exactly as set in HubSpot (it is signed); absent: "
        "the URL the request reached duly at",
    )
    accept_v2: bool = Field(
        default=False,
        description="HubSpot: also take X-HubSpot-Signature v2, which the workflow 'Send a "
        "webhook' action may send alone (no timestamp, so no replay window)",
    )
    organization_ids: list[str] = Field(
        default_factory=list,
        description="Salesforce: the organization ids whose Outbound Messages are accepted",
    )
    secret_header: str = Field(
        default="X-Duly-Secret",
        description="Salesforce: the header a Flow HTTP callout sends the secret in",
    )
    owners: str | None = Field(
        default=None,
        description="which crm_ids key in org.yaml maps owner ids; absent: the crm's name",
    )
    objects: dict[str, ObjectRules] = Field(
        min_length=1, description="per CRM object type (contact, deal, Lead, Case...)"
    )

    @property
    def owner_key(self) -> str:
        """The `crm_ids` key that maps this source's owner ids to users."""
        return self.owners or self.crm


def check_source(spec: SourceSpec, source: Source) -> list[Problem]:
    """Problems a source's model cannot see: secrets it needs, templates that do not parse."""
    problems: list[Problem] = []
    if spec.secret is None and spec.crm != "salesforce":
        problems.append(
            source.problem(
                ("crm",),
                f"a {spec.crm} source needs 'secret': the name of the DULY_* variable holding "
                f"{SECRET_IS[spec.crm]}",
            )
        )
    if spec.crm == "salesforce" and not spec.organization_ids and spec.secret is None:
        problems.append(
            source.problem(
                ("crm",),
                "a salesforce source needs 'organization_ids' (for Outbound Messages) or "
                "'secret' (for Flow HTTP callouts)",
            )
        )
    for key, applies in (
        ("url", spec.crm == "hubspot"),
        ("accept_v2", spec.crm == "hubspot"),
        ("organization_ids", spec.crm == "salesforce"),
    ):
        if key in (source.data or {}) and not applies:
            problems.append(
                source.problem((key,), f"'{key}' applies to another CRM, not {spec.crm}", key=True)
            )
    for name, rules in spec.objects.items():
        if rules.fetch and spec.crm != "hubspot":
            problems.append(
                source.problem(
                    ("objects", name, "fetch"), "only a hubspot source can fetch records"
                )
            )
        for index, rule in enumerate(rules.events):
            path: YamlPath = ("objects", name, "events", index)
            if rule.when is not None and (why := expression_problem(rule.when)):
                problems.append(source.problem((*path, "when"), why))
            for field in ("id", "occurred_at", "owner"):
                text = getattr(rule, field)
                if text is not None and (why := template_problem(text)):
                    problems.append(source.problem((*path, field), why))
            problems.extend(_data_problems(rule.data, (*path, "data"), source))
    return problems


def _data_problems(value: Any, path: YamlPath, source: Source) -> list[Problem]:
    if isinstance(value, str):
        why = template_problem(value)
        return [source.problem(path, why)] if why else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _data_problems(v, (*path, k), source)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _data_problems(v, (*path, i), source)]
    return []

"""HubSpot's CRM v3 objects API, with a private-app access token.

- `update`: `PATCH /crm/v3/objects/{objectType}/{id}` with `{"properties": {...}}`; setting
  the same values twice changes nothing, so a retry is harmless.
- `log`: `POST /crm/v3/objects/tasks` (or `notes`) with `hs_timestamp`, the subject/body and an
  association to the record (HubSpot's default association type ids). HubSpot documents no
  idempotency key for creates, so when `DULY_HUBSPOT_DEDUPE_PROPERTY` names a text property
  on tasks and notes, duly writes its key there and first searches for it
  (`POST /crm/v3/objects/{tasks|notes}/search`): a retry finds the activity it made. HubSpot's
  search index lags a few seconds behind writes, so two attempts within seconds of each other
  can still both create; without the property, a retry after a lost answer may log twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from duly.crm.http import NotConfigured, Refused, call
from duly.crm.model import Activity, Written
from duly.settings import Settings

# HubSpot-defined association type ids: (activity, record object) -> type id
ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("tasks", "contacts"): 204,
    ("tasks", "companies"): 192,
    ("tasks", "deals"): 216,
    ("tasks", "tickets"): 230,
    ("notes", "contacts"): 202,
    ("notes", "companies"): 190,
    ("notes", "deals"): 214,
    ("notes", "tickets"): 228,
}


@dataclass(frozen=True)
class HubSpot:
    """A HubSpot account, reached with a private-app token."""

    token: str
    api_url: str = "https://api.hubapi.com"
    dedupe_property: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> HubSpot:
        """From `DULY_HUBSPOT_TOKEN`, `DULY_HUBSPOT_API_URL`, `DULY_HUBSPOT_DEDUPE_PROPERTY`.

        Raises:
            NotConfigured: No token is set.
        """
        if not settings.hubspot_token:
            raise NotConfigured(
                "HubSpot write-back needs DULY_HUBSPOT_TOKEN (a private app's access token "
                "with the crm.objects scopes) where the worker runs"
            )
        return cls(
            settings.hubspot_token,
            settings.hubspot_api_url.rstrip("/"),
            settings.hubspot_dedupe_property,
        )

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        response = call("HubSpot", method, f"{self.api_url}{path}", headers=headers, json=body)
        return response.json() if response.content else {}

    def update(self, object: str, id: str, fields: dict[str, object]) -> Written:
        """Set properties on a record (`contacts`, `deals`, ... or a custom object's type)."""
        properties = {name: _text(value) for name, value in fields.items()}
        self._call("PATCH", f"/crm/v3/objects/{object}/{id}", {"properties": properties})
        return Written(id=id, detail=f"set {', '.join(sorted(fields))} on {object}/{id}")

    def log(self, object: str, id: str, activity: Activity) -> Written:
        """Log a task or a note on a record, associated with it."""
        kind = "tasks" if activity.kind == "task" else "notes"
        type_id = ASSOCIATION_TYPES.get((kind, object))
        if type_id is None:
            known = sorted({obj for (k, obj) in ASSOCIATION_TYPES if k == kind})
            raise Refused(
                f"HubSpot: cannot associate {kind} with '{object}'; expected one of "
                f"{', '.join(known)}"
            )
        if self.dedupe_property:
            found = self._find(kind, activity.token)
            if found:
                return Written(id=found, existed=True, detail=f"{kind}/{found} already logged")
        properties: dict[str, str] = {"hs_timestamp": _ms(activity)}
        if kind == "tasks":
            properties |= {
                "hs_task_subject": activity.subject,
                "hs_task_body": activity.body,
                "hs_task_status": "COMPLETED" if activity.done else "NOT_STARTED",
                "hs_task_type": "TODO",
            }
        else:
            properties["hs_note_body"] = activity.body
        if activity.owner:
            properties["hubspot_owner_id"] = activity.owner
        if self.dedupe_property:
            properties[self.dedupe_property] = activity.token
        association = {
            "to": {"id": id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
        created = self._call(
            "POST",
            f"/crm/v3/objects/{kind}",
            {"properties": properties, "associations": [association]},
        )
        new_id = str(created.get("id", ""))
        return Written(id=new_id, detail=f"logged {kind}/{new_id} on {object}/{id}")

    def _find(self, kind: str, token: str) -> str | None:
        match = {"propertyName": self.dedupe_property, "operator": "EQ", "value": token}
        search = {"filterGroups": [{"filters": [match]}], "limit": 1}
        found = self._call("POST", f"/crm/v3/objects/{kind}/search", search)
        results = found.get("results") or []
        return str(results[0]["id"]) if results else None


def _ms(activity: Activity) -> str:
    return str(int(activity.due.timestamp() * 1000))


def _text(value: object) -> str:
    """HubSpot property values are strings; booleans as `true`/`false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)

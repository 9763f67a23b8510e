"""Pipedrive's API (v2 where it has the endpoint, v1 otherwise), with an API token.

- `update`: `PATCH /api/v2/{deals|persons|organizations}/{id}` (leads: `PATCH /v1/leads/{id}`);
  the same values twice change nothing. Custom fields go by their key (a 40-character hash).
- `log`: a task is an activity (`POST /api/v2/activities`, `done` for a logged outcome), a note
  a note (`POST /v1/notes`). Pipedrive documents no idempotency key and no unique field for
  either, so duly ends the text with its key (`[duly:<token>]`) and first reads the record's
  activities or notes (`GET`, not a search index: what was written is there) for one that
  carries it; a retry finds the one it made. Two attempts racing each other could still both
  create: duly runs one attempt at a time, so that needs a lost worker mid-call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from duly.crm.http import NotConfigured, Refused, call
from duly.crm.model import Activity, Written
from duly.settings import Settings

# the record object -> the field an activity or note names it by
LINKS = {
    "deals": "deal_id",
    "persons": "person_id",
    "organizations": "org_id",
    "leads": "lead_id",
}


@dataclass(frozen=True)
class Pipedrive:
    """A Pipedrive company account, reached with an API token."""

    token: str
    api_url: str = "https://api.pipedrive.com"

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipedrive:
        """From `DULY_PIPEDRIVE_API_TOKEN` and `DULY_PIPEDRIVE_API_URL`.

        Raises:
            NotConfigured: No token is set.
        """
        if not settings.pipedrive_api_token:
            raise NotConfigured(
                "Pipedrive write-back needs DULY_PIPEDRIVE_API_TOKEN (Personal preferences > "
                "API in Pipedrive) where the worker runs"
            )
        return cls(settings.pipedrive_api_token, settings.pipedrive_api_url.rstrip("/"))

    def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        headers = {"x-api-token": self.token, "Content-Type": "application/json"}
        url = f"{self.api_url}{path}"
        response = call("Pipedrive", method, url, headers=headers, json=body, params=params)
        return response.json() if response.content else {}

    def update(self, object: str, id: str, fields: dict[str, object]) -> Written:
        """Set fields on a deal, person, organization or lead."""
        _link(object)  # a known object, or a clear refusal
        path = f"/v1/leads/{id}" if object == "leads" else f"/api/v2/{object}/{id}"
        self._call("PATCH", path, dict(fields))
        return Written(id=id, detail=f"set {', '.join(sorted(fields))} on {object}/{id}")

    def log(self, object: str, id: str, activity: Activity) -> Written:
        """Log an activity or a note on a record, once per key (see the module)."""
        link = _link(object)
        marker = f"[duly:{activity.token}]"
        record: int | str = id if object == "leads" else _number(id)
        if activity.kind == "task":
            listed = self._call("GET", "/api/v2/activities", params={link: record, "limit": 500})
            found = _carrying(listed, "note", marker)
            if found:
                return Written(id=found, existed=True, detail=f"activity {found} already logged")
            due = activity.due.astimezone(UTC)  # Pipedrive's due_time is in UTC
            body: dict[str, Any] = {
                "subject": activity.subject or "Task",
                "type": "task",
                "note": f"{activity.body}\n{marker}".strip(),
                "done": activity.done,
                "due_date": due.date().isoformat(),
                "due_time": due.strftime("%H:%M"),
                link: record,
            }
            if activity.owner:
                body["owner_id"] = _number(activity.owner)
            created = self._call("POST", "/api/v2/activities", body)
            new_id = str((created.get("data") or {}).get("id", ""))
            return Written(id=new_id, detail=f"logged activity {new_id} on {object}/{id}")
        listed = self._call("GET", "/v1/notes", params={link: record, "limit": 500})
        found = _carrying(listed, "content", marker)
        if found:
            return Written(id=found, existed=True, detail=f"note {found} already logged")
        created = self._call(
            "POST", "/v1/notes", {"content": f"{activity.body}\n{marker}".strip(), link: record}
        )
        new_id = str((created.get("data") or {}).get("id", ""))
        return Written(id=new_id, detail=f"logged note {new_id} on {object}/{id}")


def _link(object: str) -> str:
    if object not in LINKS:
        raise Refused(f"Pipedrive: no object '{object}'; expected one of {', '.join(LINKS)}")
    return LINKS[object]


def _number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Refused(f"Pipedrive ids are numbers, not {value!r}") from None


def _carrying(listed: Any, field: str, marker: str) -> str | None:
    for item in (listed or {}).get("data") or []:
        if isinstance(item, dict) and marker in str(item.get(field) or ""):
            return str(item.get("id", ""))
    return None

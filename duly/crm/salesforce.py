"""Salesforce's REST API (sObjects), with an OAuth access token and the org's instance URL.

- `update`: `PATCH /services/data/vXX.X/sobjects/{Object}/{Id}` with the fields; setting the
  same values twice changes nothing.
- `log`: a Task on the record (`WhoId` for a Lead or Contact, `WhatId` otherwise); a note is
  a completed Task, so it shows in the record's activity history. With an External ID field
  on Activity (`DULY_SALESFORCE_EXTERNAL_ID_FIELD`, `Duly_Key__c` by default) it is an upsert,
  `PATCH /sobjects/Task/{field}/{key}`: a retry updates the Task it made instead of making
  another. With the setting empty, a plain `POST /sobjects/Task`, which a retry after a lost
  answer may repeat.

Salesforce signals its API limits as 403 `REQUEST_LIMIT_EXCEEDED` (see `duly.crm.http`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from duly.crm.http import NotConfigured, call
from duly.crm.model import Activity, Written
from duly.settings import Settings

WHO_OBJECTS = ("Lead", "Contact")  # a Task names these in WhoId, anything else in WhatId


@dataclass(frozen=True)
class Salesforce:
    """A Salesforce org, reached with a bearer token."""

    instance_url: str
    token: str
    api_version: str = "v62.0"
    external_id_field: str = "Duly_Key__c"

    @classmethod
    def from_settings(cls, settings: Settings) -> Salesforce:
        """From `DULY_SALESFORCE_INSTANCE_URL`, `DULY_SALESFORCE_TOKEN` and the API version.

        Raises:
            NotConfigured: The instance URL or the token is not set.
        """
        if not settings.salesforce_instance_url or not settings.salesforce_token:
            raise NotConfigured(
                "Salesforce write-back needs DULY_SALESFORCE_INSTANCE_URL (e.g. "
                "https://yourorg.my.salesforce.com) and DULY_SALESFORCE_TOKEN (an OAuth access "
                "token) where the worker runs"
            )
        return cls(
            settings.salesforce_instance_url.rstrip("/"),
            settings.salesforce_token,
            settings.salesforce_api_version,
            settings.salesforce_external_id_field,
        )

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        url = f"{self.instance_url}/services/data/{self.api_version}{path}"
        response = call("Salesforce", method, url, headers=headers, json=body)
        return response.json() if response.content else {}

    def update(self, object: str, id: str, fields: dict[str, object]) -> Written:
        """Set fields on a record (`Lead`, `Opportunity`, `Case`, ...)."""
        self._call("PATCH", f"/sobjects/{object}/{id}", dict(fields))
        return Written(id=id, detail=f"set {', '.join(sorted(fields))} on {object}/{id}")

    def log(self, object: str, id: str, activity: Activity) -> Written:
        """Log a Task (a note: a completed one) on a record, once per key when upserting."""
        task: dict[str, Any] = {
            "Subject": activity.subject or ("Note" if activity.kind == "note" else "Task"),
            "Description": activity.body,
            "Status": "Completed" if activity.done or activity.kind == "note" else "Not Started",
            "ActivityDate": activity.due.date().isoformat(),
            ("WhoId" if object in WHO_OBJECTS else "WhatId"): id,
        }
        if activity.owner:
            task["OwnerId"] = activity.owner
        if self.external_id_field:
            path = f"/sobjects/Task/{self.external_id_field}/{activity.token}"
            answer = self._call("PATCH", path, task)
            task_id = str(answer.get("id", ""))
            existed = answer.get("created") is False
            detail = f"{'updated' if existed else 'logged'} Task {task_id} on {object}/{id}"
            return Written(id=task_id, existed=existed, detail=detail)
        answer = self._call("POST", "/sobjects/Task", task)
        task_id = str(answer.get("id", ""))
        return Written(id=task_id, detail=f"logged Task {task_id} on {object}/{id}")

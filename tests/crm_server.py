"""A local stand-in for the CRM APIs duly calls: HubSpot, Salesforce and Pipedrive.

A real HTTP server on 127.0.0.1 answering the documented endpoints duly uses, with the
documented bodies: records read and fields written, tasks and notes created (HubSpot's search,
Salesforce's upsert by External ID, Pipedrive's lists), bearer tokens and API tokens checked.
`fail_next` queues errors (429 with `Retry-After`, Salesforce's 403 `REQUEST_LIMIT_EXCEEDED`,
5xx) answered before the next matching request is handled, or after it (the write done, its
answer lost), as a CRM under load does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "crm-test-token"
SALESFORCE_VERSION = "v62.0"


@dataclass
class Fault:
    """An answer to give one matching request instead of (or after) handling it."""

    status: int
    headers: dict[str, str]
    body: Any
    path: str  # a regular expression the request's path must match
    after: bool  # handle the request first, then answer the error (a lost answer)


@dataclass
class FakeCrm:
    """What the CRMs hold, and every request they got."""

    url: str = ""
    records: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=lambda: count(1001))

    def fail_next(
        self,
        status: int,
        *,
        path: str = "",
        headers: dict[str, str] | None = None,
        body: Any = None,
        after: bool = False,
    ) -> None:
        """Answer the next request whose path matches `path` with this error."""
        with self.lock:
            self.faults.append(Fault(status, headers or {}, body, path, after))

    def record(self, crm: str, object: str, id: str, **fields: Any) -> None:
        """Put a record in the CRM."""
        self.records[(crm, object, id)] = dict(fields)

    def new_id(self) -> str:
        return str(next(self.ids))

    def fault_for(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if re.search(fault.path, path):
                    self.faults.remove(fault)
                    return fault
        return None


Answer = tuple[int, Any]


class _Handler(BaseHTTPRequestHandler):
    crm: FakeCrm

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        crm = self.crm
        with crm.lock:
            crm.requests.append((method, parts.path))
        fault = crm.fault_for(parts.path)
        if fault is not None and not fault.after:
            self._answer(fault.status, fault.body, fault.headers)
            return
        if not self._authorized(parts.path, query):
            self._answer(401, {"message": "authentication credentials not valid"})
            return
        with crm.lock:
            status, answer = _route(crm, method, parts.path, query, body)
        if fault is not None:
            self._answer(fault.status, fault.body, fault.headers)
            return
        self._answer(status, answer)

    def _authorized(self, path: str, query: dict[str, str]) -> bool:
        if path.startswith(("/api/v2/", "/v1/")):
            return TOKEN in (self.headers.get("x-api-token"), query.get("api_token"))
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _route(crm: FakeCrm, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
    if path.startswith("/crm/v3/objects/"):
        return _hubspot(crm, method, path.removeprefix("/crm/v3/objects/").split("/"), body)
    prefix = f"/services/data/{SALESFORCE_VERSION}/sobjects/"
    if path.startswith(prefix):
        return _salesforce(crm, method, path.removeprefix(prefix).split("/"), body)
    if path.startswith(("/api/v2/", "/v1/")):
        return _pipedrive(crm, method, path.split("/")[1:], query, body)
    return 404, {"message": f"no endpoint {path}"}


def _hubspot(crm: FakeCrm, method: str, parts: list[str], body: Any) -> Answer:
    if (
        len(parts) == 2
        and parts[0] in ("tasks", "notes")
        and parts[1] == "search"
        and method == "POST"
    ):
        [match] = body["filterGroups"][0]["filters"]
        store = crm.tasks if parts[0] == "tasks" else crm.notes
        found = [
            {"id": item["id"], "properties": item["properties"]}
            for item in store
            if item["crm"] == "hubspot"
            and item["properties"].get(match["propertyName"]) == match["value"]
        ]
        return 200, {"total": len(found), "results": found[: body.get("limit", 10)]}
    if len(parts) == 1 and parts[0] in ("tasks", "notes") and method == "POST":
        properties = body.get("properties") or {}
        if "hs_timestamp" not in properties:
            return 400, {"status": "error", "message": "hs_timestamp is required"}
        item = {
            "crm": "hubspot",
            "id": crm.new_id(),
            "properties": properties,
            "associations": body.get("associations") or [],
        }
        (crm.tasks if parts[0] == "tasks" else crm.notes).append(item)
        return 201, {"id": item["id"], "properties": properties}
    if len(parts) == 2:
        record = crm.records.get(("hubspot", parts[0], parts[1]))
        if record is None:
            return 404, {
                "status": "error",
                "message": "resource not found",
                "category": "OBJECT_NOT_FOUND",
            }
        if method == "PATCH":
            for name, value in body["properties"].items():
                if not isinstance(value, str):
                    return 400, {"status": "error", "message": f"{name} must be a string"}
            record.update(body["properties"])
        return 200, {"id": parts[1], "properties": record}
    return 404, {"message": "no such HubSpot endpoint"}


def _salesforce(crm: FakeCrm, method: str, parts: list[str], body: Any) -> Answer:
    if parts[0] == "Task" and len(parts) == 3 and method == "PATCH":  # upsert by External ID
        field_name, value = parts[1], parts[2]
        for task in crm.tasks:
            if task["crm"] == "salesforce" and task["fields"].get(field_name) == value:
                task["fields"].update(body)
                return 200, {"id": task["id"], "success": True, "errors": [], "created": False}
        task = {
            "crm": "salesforce",
            "id": "00T" + crm.new_id(),
            "fields": {**body, field_name: value},
        }
        crm.tasks.append(task)
        return 201, {"id": task["id"], "success": True, "errors": [], "created": True}
    if parts == ["Task"] and method == "POST":
        task = {"crm": "salesforce", "id": "00T" + crm.new_id(), "fields": dict(body)}
        crm.tasks.append(task)
        return 201, {"id": task["id"], "success": True, "errors": []}
    if len(parts) == 2:
        record = crm.records.get(("salesforce", parts[0], parts[1]))
        if record is None:
            return 404, [
                {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
            ]
        if method == "PATCH":
            record.update(body)
            return 204, None
        return 200, {"Id": parts[1], **record}
    return 404, [{"errorCode": "NOT_FOUND", "message": "no such sObject endpoint"}]


def _pipedrive(
    crm: FakeCrm, method: str, parts: list[str], query: dict[str, str], body: Any
) -> Answer:
    version, *rest = parts
    if version == "api":
        rest = rest[1:]  # "api", "v2", ...
    links = ("deal_id", "person_id", "org_id", "lead_id")
    if rest == ["activities"] or rest == ["notes"]:
        store = crm.tasks if rest == ["activities"] else crm.notes
        if method == "GET":
            link = next((name for name in links if name in query), None)
            found = [
                item["fields"]
                for item in store
                if item["crm"] == "pipedrive"
                and link
                and str(item["fields"].get(link)) == query[link]
            ]
            return 200, {"success": True, "data": found}
        item = {"crm": "pipedrive", "id": int(crm.new_id()), "fields": dict(body)}
        item["fields"]["id"] = item["id"]
        store.append(item)
        return 201, {"success": True, "data": item["fields"]}
    if len(rest) == 2 and method in ("GET", "PATCH"):
        record = crm.records.get(("pipedrive", rest[0], rest[1]))
        if record is None:
            return 404, {"success": False, "error": "not found"}
        if method == "PATCH":
            record.update(body)
        return 200, {"success": True, "data": {"id": rest[1], **record}}
    return 404, {"success": False, "error": "no such Pipedrive endpoint"}


@contextmanager
def crm_server() -> Iterator[FakeCrm]:
    """Run the fake CRM on 127.0.0.1 on a free port until the block ends."""
    crm = FakeCrm()
    handler = type("Handler", (_Handler,), {"crm": crm})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    crm.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield crm
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

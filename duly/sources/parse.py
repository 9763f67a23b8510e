"""Each CRM's webhook payload, in its documented shape, read into `Change`s.

Every reader refuses what is not its CRM's shape with `PayloadError` saying what was expected,
and reads nothing it does not need: the whole item stays available to templates as `event`.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

from duly.sources.changes import Change, from_epoch_ms

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

# HubSpot's object type ids, for the generic `object.*` subscription types
HUBSPOT_OBJECT_TYPES = {"0-1": "contact", "0-2": "company", "0-3": "deal", "0-5": "ticket"}
HUBSPOT_CHANGES = {
    "creation": "created",
    "propertyChange": "updated",
    "deletion": "deleted",
    "merge": "merged",
    "restore": "restored",
    "associationChange": "associated",
    "privacyDeletion": "deleted",
}
PIPEDRIVE_CHANGES = {"create": "created", "change": "updated", "delete": "deleted"}
MAX_BATCH = 1000
"""Items one request may carry (HubSpot batches at most 100; Salesforce 100 notifications)."""


class PayloadError(ValueError):
    """The body is not in the CRM's documented shape; the message says what was expected."""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(f"the request body is not valid JSON: {exc}") from None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def hubspot(body: bytes) -> list[Change]:
    """A webhook subscription batch (a JSON array) or a workflow "Send a webhook" object."""
    document = _json(body)
    if isinstance(document, dict):
        return [_hubspot_workflow(document, body)]
    if not isinstance(document, list):
        raise PayloadError("a HubSpot webhook body is a JSON array of events")
    if len(document) > MAX_BATCH:
        raise PayloadError(f"{len(document)} events in one request; at most {MAX_BATCH}")
    return [_hubspot_event(index, item) for index, item in enumerate(document)]


def _hubspot_event(index: int, item: Any) -> Change:
    if not isinstance(item, dict):
        raise PayloadError(f"event [{index}] is not a JSON object")
    missing = [
        key
        for key in ("portalId", "subscriptionType", "objectId", "eventId", "occurredAt")
        if item.get(key) in (None, "")
    ]
    if missing:
        raise PayloadError(f"event [{index}] has no {', '.join(missing)}")
    subscription = str(item["subscriptionType"])
    kind, _, verb = subscription.partition(".")
    if kind == "object":  # the generic subscription types name the object by its type id
        kind = HUBSPOT_OBJECT_TYPES.get(
            str(item.get("objectTypeId")), str(item.get("objectTypeId"))
        )
    record: dict[str, Any] = {}
    if item.get("propertyName"):
        record[str(item["propertyName"])] = item.get("propertyValue")
    # HubSpot: eventId alone is not unique; these five together are
    key = ":".join(
        _text(item[k])
        for k in ("portalId", "subscriptionType", "objectId", "eventId", "occurredAt")
    )
    return Change(
        object=kind,
        object_id=_text(item["objectId"]),
        change=HUBSPOT_CHANGES.get(verb, verb),
        key=key,
        occurred_at=from_epoch_ms(item["occurredAt"]),
        record=record,
        raw=item,
    )


def _hubspot_workflow(item: dict[str, Any], body: bytes) -> Change:
    """A workflow's "Send a webhook" body: the record with its properties, no event id."""
    object_id = item.get("objectId", item.get("vid", item.get("hs_object_id")))
    if object_id in (None, ""):
        raise PayloadError("a HubSpot workflow webhook body names its record by objectId (or vid)")
    properties = item.get("properties")
    record: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        for name, value in properties.items():
            # the contact format wraps each value: {"firstname": {"value": "Kim", ...}}
            record[str(name)] = value.get("value") if isinstance(value, Mapping) else value
    kind = str(item.get("objectType") or "contact").lower()
    # no event id to key on: a retried delivery resends the same body, so its hash is the key
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Change(
        object=kind,
        object_id=_text(object_id),
        change="workflow",
        key=f"workflow:{kind}:{object_id}:{digest}",
        occurred_at=None,
        record=record,
        raw=item,
    )


def salesforce_outbound(body: bytes) -> tuple[str, list[Change]]:
    """A SOAP `notifications` message: its OrganizationId and one change per Notification."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise PayloadError("an Outbound Message has no DOCTYPE or entities")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise PayloadError(f"the request body is not valid XML: {exc}") from None
    found = root.find(f"{{{SOAP}}}Body/{{{OUTBOUND}}}notifications")
    if found is None:
        raise PayloadError(
            "not a Salesforce Outbound Message: expected a SOAP Envelope whose Body holds "
            f"notifications in {OUTBOUND}"
        )
    organization = (found.findtext(f"{{{OUTBOUND}}}OrganizationId") or "").strip()
    notifications = found.findall(f"{{{OUTBOUND}}}Notification")
    if len(notifications) > MAX_BATCH:
        raise PayloadError(
            f"{len(notifications)} notifications in one message; at most {MAX_BATCH}"
        )
    changes = [_notification(index, n) for index, n in enumerate(notifications)]
    return organization, changes


def _notification(index: int, element: ElementTree.Element) -> Change:
    notification_id = (element.findtext(f"{{{OUTBOUND}}}Id") or "").strip()
    sobject = element.find(f"{{{OUTBOUND}}}sObject")
    if not notification_id or sobject is None:
        raise PayloadError(f"Notification [{index}] has no Id or no sObject")
    kind = sobject.get(XSI_TYPE, "").rpartition(":")[2]
    record: dict[str, Any] = {}
    for field in sobject:
        name = field.tag.rpartition("}")[2]
        record[name] = None if field.get(XSI_NIL) == "true" else (field.text or "")
    created, modified = record.get("CreatedDate"), record.get("LastModifiedDate")
    return Change(
        object=kind,
        object_id=_text(record.get("Id")),
        change="created" if created and created == modified else "updated",
        key=notification_id,  # Salesforce resends a notification with the same Id
        occurred_at=modified or created or None,
        record=record,
        raw={"Id": notification_id, "sObject": record, "type": kind},
    )


def salesforce_flow(body: bytes) -> list[Change]:
    """A Flow HTTP callout: `{object, id, record, change?, occurred_at?}` or a list of them."""
    document = _json(body)
    items = document if isinstance(document, list) else [document]
    if len(items) > MAX_BATCH:
        raise PayloadError(f"{len(items)} items in one request; at most {MAX_BATCH}")
    changes = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("record"), dict):
            raise PayloadError(
                f'item [{index}] is not {{"object": ..., "id": ..., "record": {{...}}}}'
            )
        if not item.get("object") or not item.get("id"):
            raise PayloadError(
                f"item [{index}] needs 'object' (e.g. Lead) and 'id' (unique per change, e.g. "
                "the record Id and its LastModifiedDate)"
            )
        record = item["record"]
        changes.append(
            Change(
                object=str(item["object"]),
                object_id=_text(record.get("Id")),
                change=str(item.get("change") or "updated"),
                key=str(item["id"]),
                occurred_at=item.get("occurred_at") or record.get("LastModifiedDate"),
                record=record,
                raw=item,
            )
        )
    return changes


def pipedrive(body: bytes) -> list[Change]:
    """A webhooks v2 notification: `{data, previous, meta: {id, action, entity, ...}}`."""
    document = _json(body)
    meta = document.get("meta") if isinstance(document, dict) else None
    if not isinstance(meta, dict):
        raise PayloadError("a Pipedrive webhook body is a JSON object with 'meta'")
    if not meta.get("id") or not meta.get("entity") or not meta.get("action"):
        raise PayloadError(
            "meta has no id, entity or action: create the webhook with version 2.0 (v1 is not read)"
        )
    data = document.get("data")
    record = data if isinstance(data, dict) else {}
    return [
        Change(
            object=str(meta["entity"]),
            object_id=_text(meta.get("entity_id") or record.get("id")),
            change=PIPEDRIVE_CHANGES.get(str(meta["action"]), str(meta["action"])),
            key=str(meta["id"]),
            occurred_at=meta.get("timestamp"),
            record=record,
            raw=document,
        )
    ]


def standard(body: bytes, message_id: str) -> list[Change]:
    """A Standard Webhooks payload: `{type, timestamp, data}`, keyed by its webhook-id."""
    document = _json(body)
    if not isinstance(document, dict) or not document.get("type"):
        raise PayloadError("a Standard Webhooks body is a JSON object with 'type' and 'data'")
    data = document.get("data")
    record = data if isinstance(data, dict) else {}
    return [
        Change(
            object=str(document["type"]),
            object_id=_text(record.get("id")),
            change=str(document["type"]).rpartition(".")[2],
            key=message_id,
            occurred_at=document.get("timestamp"),
            record=record,
            raw=document,
        )
    ]


def duly(body: bytes) -> list[Change]:
    """An event in duly's own shape `{id, type, data, occurred_at?}`, keyed by its id."""
    document = _json(body)
    if not isinstance(document, dict) or not document.get("id") or not document.get("type"):
        raise PayloadError("a duly event is a JSON object {id, type, data, occurred_at?}")
    data = document.get("data")
    record = data if isinstance(data, dict) else {}
    return [
        Change(
            object=str(document["type"]),
            object_id=_text(record.get("id")),
            change=str(document["type"]).rpartition(".")[2],
            key=str(document["id"]),
            occurred_at=document.get("occurred_at"),
            record=record,
            raw=document,
        )
    ]

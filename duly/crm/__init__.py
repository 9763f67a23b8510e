"""Write-back to the CRM: small REST clients for HubSpot, Salesforce and Pipedrive.

Each client does three things, the same for every CRM: set fields on a record (`update`), log
an activity on it (`log`: a task, open or completed, or a note), both keyed by duly's
idempotency key so a retried call writes nothing twice where the CRM lets duly say so (see
each client). `client_for` picks one by name, with its credentials from duly's settings.
"""

from __future__ import annotations

from typing import Protocol

from duly.crm.http import CrmError, NotConfigured, RateLimited, Refused, Unavailable
from duly.crm.model import Activity, Written
from duly.settings import Settings

CRMS = ("hubspot", "salesforce", "pipedrive")


class CrmClient(Protocol):
    """What duly asks of every CRM."""

    def update(self, object: str, id: str, fields: dict[str, object]) -> Written:
        """Set fields on one record."""
        ...

    def log(self, object: str, id: str, activity: Activity) -> Written:
        """Log a task or a note on one record, once per `activity.key`."""
        ...


def client_for(crm: str, settings: Settings) -> CrmClient:
    """The client of one CRM, its credentials from `settings`.

    Raises:
        Refused: `crm` is not one duly knows.
        NotConfigured: Its credentials are not set.
    """
    from duly.crm.hubspot import HubSpot
    from duly.crm.pipedrive import Pipedrive
    from duly.crm.salesforce import Salesforce

    if crm == "hubspot":
        return HubSpot.from_settings(settings)
    if crm == "salesforce":
        return Salesforce.from_settings(settings)
    if crm == "pipedrive":
        return Pipedrive.from_settings(settings)
    raise Refused(f"no CRM named {crm!r}; expected one of {', '.join(CRMS)}")


__all__ = [
    "CRMS",
    "Activity",
    "CrmClient",
    "CrmError",
    "NotConfigured",
    "RateLimited",
    "Refused",
    "Unavailable",
    "Written",
    "client_for",
]

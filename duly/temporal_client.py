"""Connect to Temporal with the data converter every duly process shares."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from duly.settings import get_settings

SETTLE_SECONDS = 0.1


class TemporalUnavailable(RuntimeError):
    """Temporal did not answer at the address given."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"cannot reach Temporal at {address}: is `duly up` running?")


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """Connect to Temporal with the pydantic data converter.

    Args:
        address: `host:port` of the Temporal frontend; defaults to `DULY_TEMPORAL_ADDRESS`.
        namespace: The Temporal namespace; defaults to `DULY_TEMPORAL_NAMESPACE`.

    Returns:
        A connected client.

    Raises:
        TemporalUnavailable: Nothing answered at the address.
    """
    settings = get_settings()
    target = address or settings.temporal_address
    try:
        return await Client.connect(
            target,
            namespace=namespace or settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:  # the SDK reports a failed connect as a bare RuntimeError
        raise TemporalUnavailable(target, str(exc)) from exc


async def settle() -> None:
    """Give the SDK's threads a moment before the event loop closes and the process exits.

    Without it, a short-lived process that just used (or failed to open) a connection sometimes
    aborts at exit with "PyGILState_Release: thread state must be current"
    (temporalio/sdk-python#300): a Rust thread still releases Python objects while the
    interpreter finalizes. Here about one exit in ten did, before this pause.
    """
    await asyncio.sleep(SETTLE_SECONDS)

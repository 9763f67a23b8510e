"""Connect to Temporal, the one place that does: worker, web app and command line alike.

Everything comes from settings (`DULY_TEMPORAL_*`): the address and namespace; TLS, with a
client certificate and key for mutual TLS (a self-hosted cluster, or Temporal Cloud with
certificates), a CA for a private PKI and a server name when the certificate names another
host; or a Temporal Cloud API key. `connect_options` turns settings into the SDK's arguments
(tested without a server); `connect` uses them, with the pydantic data converter every duly
process shares.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from duly.settings import Settings, get_settings

SETTLE_SECONDS = 0.1


class TemporalUnavailable(RuntimeError):
    """Temporal did not answer at the address given."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        hint = "is `duly up` running?" if _is_local(address) else "check DULY_TEMPORAL_ADDRESS"
        super().__init__(f"cannot reach Temporal at {address}: {hint} ({reason.strip()})")


class TemporalSettingsError(ValueError):
    """The Temporal connection settings are inconsistent, or name a file that can't be read."""


def _is_local(address: str) -> bool:
    return address.rpartition(":")[0].strip("[]") in ("127.0.0.1", "localhost", "::1")


def tls_config(settings: Settings) -> bool | TLSConfig:
    """The `tls` argument of `Client.connect` the settings ask for.

    Raises:
        TemporalSettingsError: A certificate without its key (or the reverse), TLS turned off
            while certificates or an API key are given, or a file that is missing or unreadable.
    """
    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    server_name = settings.temporal_tls_server_name or None
    if (cert is None) != (key is None):
        given, missing = ("CERT", "KEY") if key is None else ("KEY", "CERT")
        raise TemporalSettingsError(
            f"DULY_TEMPORAL_TLS_{given} is set but DULY_TEMPORAL_TLS_{missing} is not: mutual "
            "TLS needs both the client certificate and its private key"
        )
    wants_tls = cert is not None or ca is not None or server_name is not None
    if settings.temporal_tls is False and (wants_tls or settings.temporal_api_key):
        raise TemporalSettingsError(
            "DULY_TEMPORAL_TLS is false, yet TLS files, a server name or an API key are set: "
            "they only work over TLS; unset DULY_TEMPORAL_TLS (or set it to true)"
        )
    if not wants_tls:
        # An API key is a bearer token: never send it in the clear
        return bool(settings.temporal_tls or settings.temporal_api_key)
    return TLSConfig(
        client_cert=_read("DULY_TEMPORAL_TLS_CERT", cert, "the client certificate"),
        client_private_key=_read("DULY_TEMPORAL_TLS_KEY", key, "the client's private key"),
        server_root_ca_cert=_read("DULY_TEMPORAL_TLS_CA", ca, "the server's CA certificate"),
        domain=server_name,
    )


def _read(variable: str, path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise TemporalSettingsError(f"{variable}={path}: no such file ({what}, PEM)") from None
    except OSError as exc:
        raise TemporalSettingsError(
            f"{variable}={path}: cannot read {what}: {exc.strerror}"
        ) from None
    if b"-----BEGIN" not in content:
        raise TemporalSettingsError(f"{variable}={path}: not a PEM file ({what})")
    return content


def connect_options(
    settings: Settings, address: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The keyword arguments of `Client.connect` for these settings.

    Args:
        settings: duly's settings (`temporal_*`).
        address: Overrides `settings.temporal_address`.
        namespace: Overrides `settings.temporal_namespace`.

    Raises:
        TemporalSettingsError: See `tls_config`.
    """
    return {
        "target_host": address or settings.temporal_address,
        "namespace": namespace or settings.temporal_namespace,
        "tls": tls_config(settings),
        "api_key": settings.temporal_api_key or None,
        "data_converter": pydantic_data_converter,
    }


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    settings: Settings | None = None,
    metrics: bool = False,
) -> Client:
    """Connect to Temporal with the pydantic data converter.

    Args:
        address: `host:port` of the Temporal frontend; defaults to `DULY_TEMPORAL_ADDRESS`.
        namespace: The Temporal namespace; defaults to `DULY_TEMPORAL_NAMESPACE`.
        settings: duly's settings; defaults to the environment's.
        metrics: Record the SDK's metrics, for this process's `/metrics` (the worker's and the
            web app's; see `duly.metrics`).

    Returns:
        A connected client.

    Raises:
        TemporalSettingsError: The TLS settings are wrong (see `tls_config`).
        TemporalUnavailable: Nothing answered at the address.
    """
    options = connect_options(settings or get_settings(), address, namespace)
    if metrics:
        from duly.metrics import temporal_runtime

        options["runtime"] = temporal_runtime()
    try:
        return await Client.connect(**options)
    except RuntimeError as exc:  # the SDK reports a failed connect as a bare RuntimeError
        raise TemporalUnavailable(options["target_host"], str(exc)) from exc


async def settle() -> None:
    """Give the SDK's threads a moment before the event loop closes and the process exits.

    Without it, a short-lived process that just used (or failed to open) a connection sometimes
    aborts at exit with "PyGILState_Release: thread state must be current"
    (temporalio/sdk-python#300): a Rust thread still releases Python objects while the
    interpreter finalizes. Here about one exit in ten did, before this pause.
    """
    await asyncio.sleep(SETTLE_SECONDS)

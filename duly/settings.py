"""duly's settings: environment variables (`DULY_*`) read once into one object."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything duly reads from its environment.

    Each field is set by the upper-case environment variable with the `DULY_` prefix, e.g.
    `DULY_DATABASE_URL` or `DULY_SMTP_PORT`.

    Attributes:
        data_dir: Where local state lives: the SQLite database, Temporal's dev-server file.
        database_url: SQLAlchemy URL of duly's database; defaults to a SQLite file in
            `data_dir`. PostgreSQL: `postgresql+psycopg://user@host:5432/duly`.
        definitions: The definitions folder (processes/, calendars/, monitors/, org.yaml).
        temporal_address: host:port of the Temporal frontend.
        temporal_namespace: The Temporal namespace duly's workflows run in.
        task_queue: The task queue duly's worker polls.
        smtp_host: SMTP server the `email` action and email notifications use.
        smtp_port: Its port.
        smtp_from: The From address of duly's emails.
        web_host: Interface the web app listens on.
        web_port: Port the web app listens on.
        public_url: Where people reach the web app (`https://duly.example.com`), for the links
            in what duly sends them; unset, `http://<web_host>:<web_port>`. When it is https,
            the web pages' cookies are `Secure` (even if a TLS proxy passes requests on as http).
        temporal_ui_port: Port of the embedded Temporal dev server's web UI.
        log_format: `console` (readable, for development) or `json` (for production).
        events_secret: The shared secret inbound events (`POST /api/events`) are signed with
            (HMAC-SHA256); the endpoint refuses every event while it is empty.
        ack_secret: The key acknowledge links in notifications are signed with (HMAC-SHA256);
            unset, one derived from `events_secret`, or without that one made once and kept
            in `<data_dir>/ack.secret` (enough when the worker and the web app share a
            machine, as under `duly up`).
        temporal_tls: Connect to Temporal over TLS. Unset: on when a client certificate, a CA
            or an API key is given, off otherwise.
        temporal_tls_cert: PEM file of the client certificate for mutual TLS (with the key).
        temporal_tls_key: PEM file of that certificate's private key.
        temporal_tls_ca: PEM file of the CA that signed the server's certificate; unset, the
            system's roots are used.
        temporal_tls_server_name: The name the server's certificate is checked against (and
            sent as SNI), when it is not the host in `temporal_address`.
        temporal_api_key: A Temporal Cloud API key (sent as a bearer token, over TLS).
        metrics_port: Where the worker serves `/metrics` (Prometheus); unset, it serves none,
            0 picks a free port. The web app serves `/metrics` on its own port.
        metrics_host: The interface the worker's `/metrics` listens on.
        cached_instances: Instances the worker keeps in memory between their workflow tasks
            (about 170 kB each); an evicted one is replayed from its history when it next has
            work. 1,000 keeps a storm of 1,000 breaches in memory while the worker stays under
            400 MB with 10,000 open (bench/README.md); raise it where more are active at once.
        outbound_hosts: The hosts the `webhook` action and the Slack and webhook notification
            channels may reach, comma-separated: `hooks.slack.com,crm.example.com`; `*.x.com`
            takes every subdomain of x.com, `*` any host. Any other host is refused before
            a connection is made. The default reaches this machine only.
        occurred_at_skew_seconds: How far in the future an event's `occurred_at` may be (the
            sender's clock running ahead of duly's) before the event is refused.
        hubspot_token: A HubSpot private-app access token (CRM write-back, record reads).
        hubspot_api_url: HubSpot's API root.
        hubspot_dedupe_property: A text property on HubSpot tasks and notes where duly writes
            its idempotency key, and looks for it before logging; empty: no lookup.
        salesforce_instance_url: The Salesforce org's instance URL
            (`https://yourorg.my.salesforce.com`), for CRM write-back.
        salesforce_token: A Salesforce OAuth access token (sent as a bearer token).
        salesforce_api_version: The Salesforce REST API version duly calls.
        salesforce_external_id_field: The External ID field on Task that makes duly's
            write-back idempotent (an upsert); empty: plain creates (see docs/language.md).
        pipedrive_api_token: A Pipedrive API token.
        pipedrive_api_url: Pipedrive's API root (your company domain works too).
        slack_api_url: Slack's Web API root, for the Slack app (org.yaml `slack:`).
    """

    model_config = SettingsConfigDict(env_prefix="DULY_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str = ""
    definitions: Path = Path("definitions")
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "duly"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "duly@localhost"
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    public_url: str = ""
    temporal_ui_port: int = 8233
    log_format: Literal["console", "json"] = "console"
    events_secret: str = Field(default="", repr=False)
    ack_secret: str = Field(default="", repr=False)
    temporal_tls: bool | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str = ""
    temporal_api_key: str = Field(default="", repr=False)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    cached_instances: int = Field(default=1000, ge=2)
    outbound_hosts: str = "localhost,127.0.0.1,::1"
    occurred_at_skew_seconds: int = Field(default=300, ge=0)
    hubspot_token: str = Field(default="", repr=False)
    hubspot_api_url: str = "https://api.hubapi.com"
    hubspot_dedupe_property: str = ""
    salesforce_instance_url: str = ""
    salesforce_token: str = Field(default="", repr=False)
    salesforce_api_version: str = "v62.0"
    salesforce_external_id_field: str = "Duly_Key__c"
    pipedrive_api_token: str = Field(default="", repr=False)
    pipedrive_api_url: str = "https://api.pipedrive.com"
    slack_api_url: str = "https://slack.com/api/"

    @model_validator(mode="before")
    @classmethod
    def _default_database_in_data_dir(cls, values: Any) -> Any:
        # The default database follows data_dir, so it can't be a plain field default
        if isinstance(values, dict) and not values.get("database_url"):
            data_dir = Path(values.get("data_dir") or "data")
            values = {**values, "database_url": f"sqlite:///{data_dir / 'duly.db'}"}
        return values


def web_url(settings: Settings) -> str:
    """The web app's address for links people follow: `public_url`, else where it listens."""
    return settings.public_url.rstrip("/") or f"http://{settings.web_host}:{settings.web_port}"


@cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()

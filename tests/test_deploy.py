"""The deployment files and the Temporal connection settings, checked without Docker.

No Docker engine runs here, so docker-compose.yml and the Dockerfile are read as data: every
image pinned, health checks where others wait on health, workers free to scale, and duly's
containers configured only by DULY_* variables that duly's settings actually read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from temporalio.service import TLSConfig
from typer.testing import CliRunner

from duly.cli import app
from duly.settings import Settings
from duly.stack import ONE_PARTITION
from duly.temporal_client import TemporalSettingsError, connect_options, tls_config

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# A version tag (postgres:16.9-bookworm, temporalio/server:1.31.0) or a digest
PINNED = re.compile(r"^[\w./-]+(:\d+(\.\d+)+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
DULY_SERVICES = ("migrate", "worker", "web")
SETTING_VARIABLES = {f"DULY_{name.upper()}" for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def pinned(image: str) -> bool:
    return bool(PINNED.match(image)) and (":" in image.split("/")[-1] or "@sha256:" in image)


def test_the_stack_has_every_part(compose: dict[str, Any]) -> None:
    parts = services(compose)
    assert {"postgres", "temporal", "temporal-ui", "worker", "web", "migrate"} <= set(parts)
    assert parts["temporal"]["environment"]["DB"] == "postgres12"
    assert parts["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    assert parts["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert parts["worker"]["command"] == ["worker"]
    assert parts["web"]["command"] == ["web"]
    assert parts["migrate"]["command"] == ["db", "upgrade"]


def test_temporal_keeps_each_task_queue_in_one_partition_as_duly_up_does(
    compose: dict[str, Any],
) -> None:
    # priority orders a backlog within a partition only (workflows/priority.py)
    temporal = services(compose)["temporal"]
    [mounted] = temporal["configs"]
    assert temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"] == mounted["target"]
    dynamic = yaml.safe_load(compose["configs"][mounted["source"]]["content"])
    given = {key: values[0]["value"] for key, values in dynamic.items()}
    partitions = dict(arg.split("=") for arg in ONE_PARTITION if "=" in arg)
    assert given == {key: int(value) for key, value in partitions.items()}


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" in service:
            continue  # duly's own image, built from the Dockerfile
        image = service["image"]
        assert pinned(image), f"{name}: image {image!r} is not pinned to a version"
        assert not image.endswith(":latest")
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert bases and all(pinned(base) for base in bases), bases


def test_waiting_is_on_health_and_health_is_checked(compose: dict[str, Any]) -> None:
    parts = services(compose)
    for name in ("postgres", "temporal", "worker", "web"):
        check = parts[name].get("healthcheck")
        assert check and check["test"], f"{name} has no health check"
    for name, service in parts.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
        for other, rule in depends.items():
            assert other in parts, f"{name} depends on unknown service {other}"
            condition = rule["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (
                f"{name} waits for {other} to merely start"
            )
            if condition == "service_healthy":
                assert parts[other].get("healthcheck"), f"{other} has no health check"
            else:
                assert str(parts[other].get("restart", "")).startswith("on-failure"), (
                    f"{other} is a one-shot job and must not restart forever"
                )
    for name in ("worker", "web"):
        assert parts[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert parts[name]["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_workers_scale_out(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "container_name" not in worker, "a fixed name allows one replica only"
    assert "ports" not in worker, "a fixed host port allows one replica only"
    port = worker["environment"]["DULY_METRICS_PORT"]
    assert f":{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    web = services(compose)["web"]
    assert f":{web['environment']['DULY_WEB_PORT']}/metrics" in " ".join(web["healthcheck"]["test"])


def published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """A service's published ports as (host address, host port); address "" is every interface.

    Compose's short syntax is `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]` (an IPv6
    address in brackets); its long syntax a mapping with `host_ip` and `published`.
    """
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "")), str(port.get("published", ""))))
            continue
        text = str(port).split("/")[0]
        address = ""
        if text.startswith("["):
            address, text = text[1:].split("]:", 1)
        parts = text.split(":")
        if len(parts) == 3:
            address, parts = parts[0], parts[1:]
        found.append((address, parts[0] if len(parts) == 2 else ""))
    return found


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def test_what_has_no_login_of_its_own_is_published_on_loopback_only(
    compose: dict[str, Any],
) -> None:
    parts = services(compose)
    ui = published(parts["temporal-ui"])
    assert ui == [("127.0.0.1", "8080")], ui
    # nor Temporal's frontend or PostgreSQL (duly's web app has its own login)
    for name in ("temporal", "postgres"):
        for address, port in published(parts[name]):
            assert address in LOOPBACK, f"{name} publishes port {port} on every interface"


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("8080:8080", [("", "8080")]),
        ("127.0.0.1:8080:8080", [("127.0.0.1", "8080")]),
        ("[::1]:8080:8080/tcp", [("::1", "8080")]),
        ("8080", [("", "")]),
        ({"target": 8080, "published": "8080", "host_ip": "127.0.0.1"}, [("127.0.0.1", "8080")]),
        ({"target": 8080, "published": "8080"}, [("", "8080")]),
    ],
)
def test_published_ports_are_read_in_every_syntax(
    port: str | dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert published({"ports": [port]}) == expected


def test_the_deploy_guide_says_how_to_put_the_temporal_ui_behind_auth() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("## The Temporal UI", 1)[1].split("\n## ", 1)[0]
    for needed in ("127.0.0.1:8080", "TEMPORAL_AUTH_ENABLED", "TEMPORAL_AUTH_PROVIDER_URL"):
        assert needed in section, needed
    assert "reverse proxy" in section


def test_duly_is_configured_only_by_variables_it_reads(compose: dict[str, Any]) -> None:
    for name in DULY_SERVICES:
        service = services(compose)[name]
        assert "env_file" not in service, f"{name}: configuration goes in DULY_* variables"
        environment = service["environment"]
        assert isinstance(environment, dict)
        for variable in environment:
            assert variable.startswith("DULY_"), f"{name} sets {variable}"
            assert variable in SETTING_VARIABLES, f"{name} sets {variable}, which duly ignores"
        # and the values are ones the settings accept
        values = {
            key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
            for key, value in environment.items()
        }
        settings = Settings(**{key.removeprefix("DULY_").lower(): v for key, v in values.items()})
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert settings.temporal_address == "temporal:7233"
        assert settings.log_format == "json"
    dockerfile_vars = re.findall(r"\b(DULY_\w+)=", DOCKERFILE.read_text(encoding="utf-8"))
    assert dockerfile_vars and set(dockerfile_vars) <= SETTING_VARIABLES


def test_the_image_context_leaves_out_what_the_image_does_not_need() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".venv", ".git", "data", "tests"} <= set(ignored)
    for needed in ("duly", "workflows", "activities", "worker.py", "definitions", "README.md"):
        assert needed not in ignored
        assert (ROOT / needed).exists()


# --- connecting to any Temporal ------------------------------------------------------------------

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def test_a_plain_local_temporal_by_default() -> None:
    options = connect_options(Settings())
    assert options["target_host"] == "127.0.0.1:7233"
    assert options["namespace"] == "default"
    assert options["tls"] is False
    assert options["api_key"] is None


def test_temporal_cloud_with_an_api_key_uses_tls() -> None:
    settings = Settings(
        temporal_address="duly.a1b2c.tmprl.cloud:7233",
        temporal_namespace="duly.a1b2c",
        temporal_api_key="secret-key",
    )
    options = connect_options(settings)
    assert options["target_host"] == "duly.a1b2c.tmprl.cloud:7233"
    assert options["namespace"] == "duly.a1b2c"
    assert options["api_key"] == "secret-key"
    assert options["tls"] is True
    assert "secret-key" not in repr(settings)


def test_mutual_tls_reads_the_certificate_key_and_ca(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_bytes(PEM)
    (tmp_path / "client.key").write_bytes(KEY)
    (tmp_path / "ca.pem").write_bytes(PEM)
    settings = Settings(
        temporal_address="temporal.internal:7233",
        temporal_tls_cert=tmp_path / "client.pem",
        temporal_tls_key=tmp_path / "client.key",
        temporal_tls_ca=tmp_path / "ca.pem",
        temporal_tls_server_name="frontend.temporal.internal",
    )
    tls = tls_config(settings)
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == PEM
    assert tls.client_private_key == KEY
    assert tls.server_root_ca_cert == PEM
    assert tls.domain == "frontend.temporal.internal"


def test_tls_with_the_system_roots() -> None:
    assert connect_options(Settings(temporal_tls=True))["tls"] is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"temporal_tls_cert": "missing/client.pem", "temporal_tls_key": "missing/client.key"},
            "DULY_TEMPORAL_TLS_CERT=missing/client.pem: no such file",
        ),
        ({"temporal_tls_cert": "client.pem"}, "DULY_TEMPORAL_TLS_KEY is not"),
        ({"temporal_tls_key": "client.key"}, "DULY_TEMPORAL_TLS_CERT is not"),
        (
            {"temporal_tls_ca": "nowhere/ca.pem"},
            "DULY_TEMPORAL_TLS_CA=nowhere/ca.pem: no such file",
        ),
        ({"temporal_tls": False, "temporal_api_key": "k"}, "DULY_TEMPORAL_TLS is false"),
    ],
)
def test_wrong_tls_settings_say_what_is_wrong(
    overrides: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemporalSettingsError, match=re.escape(message)):
        connect_options(Settings(**overrides))


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(TemporalSettingsError, match="not a PEM file"):
        tls_config(Settings(temporal_tls_ca=tmp_path / "ca.der"))


def test_the_worker_refuses_a_missing_certificate_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["worker", "--definitions", str(ROOT / "definitions")],
        env={
            "DULY_DATABASE_URL": f"sqlite:///{tmp_path / 'duly.db'}",
            "DULY_TEMPORAL_TLS_CERT": str(tmp_path / "client.pem"),
            "DULY_TEMPORAL_TLS_KEY": str(tmp_path / "client.key"),
        },
    )
    assert result.exit_code == 1
    assert f"DULY_TEMPORAL_TLS_CERT={tmp_path / 'client.pem'}: no such file" in result.output
    assert "Traceback" not in result.output

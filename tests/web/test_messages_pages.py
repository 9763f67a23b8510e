"""What people act on from a message: the acknowledge link, and times and titles on the pages.

The acknowledge link is followed as a person (and a mail scanner) would: GET shows a button
and changes nothing; POST acknowledges, once, as the manager the link was sent to, through the
alerts service's access rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from api.conftest import SECRET, Api, quote, signed_in_as
from sqlmodel import select

from activities.messages import EscalateInput, OpenTaskInput, StartInstanceInput
from activities.process import ProcessActivities
from duly import timefmt
from duly.notify.ack_links import ack_secret, make_token
from duly.settings import Settings
from duly.store.models import Alert, Delivery, User

INSTANCE = "quote-follow-up/Q-77/0190a1b2c3d4"
TASK = f"{INSTANCE}/call-customer/1"
# links last a week from their alert: the alert is recent
DUE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
OPENED = DUE - timedelta(days=2)
NEW_YORK, LISBON = ZoneInfo("America/New_York"), ZoneInfo("Europe/Lisbon")


def app_settings(tmp_path: Path) -> Settings:
    """The offline app's settings, as far as acknowledge links go: the same signing key."""
    return Settings(events_secret=SECRET, data_dir=tmp_path)


def breach_for_maria(api: Api, tmp_path: Path) -> tuple[Alert, str]:
    """A breach alert to maria, made by the activities; its row and the path of its ack link."""
    settings = app_settings(tmp_path)
    acts = ProcessActivities(api.sessions, settings)
    process = api.definitions.processes["quote-follow-up"]
    acts.start_instance(
        StartInstanceInput(
            instance_id=INSTANCE,
            process=process.name,
            version=process.version,
            hash=process.hash,
            business_key="Q-77",
            compiled_json=process.model_dump_json(),
            data=quote("Q-77"),
            started_at=OPENED,
        )
    )
    acts.open_task(
        OpenTaskInput(
            task_id=TASK,
            instance_id=INSTANCE,
            process=process.name,
            step="call-customer",
            visit=1,
            title="Call Lee Park about quote Q-77",
            assign="user:ana",
            team="inbound-sales",
            opened_at=OPENED,
            due_at=DUE,
        )
    )
    acts.escalate(
        EscalateInput(
            alert_key=f"{INSTANCE}/step:call-customer/1/1",
            instance_id=INSTANCE,
            process=process.name,
            step="call-customer",
            clock="step:call-customer",
            rung=1,
            at_percent=100,
            level="breach",
            notify="manager",
            task_id=TASK,
            assignee="ana",
            team="inbound-sales",
            due_at=DUE,
            fired_at=DUE,
            title="Call Lee Park about quote Q-77",
        )
    )
    with api.sessions() as session:
        alert = session.exec(select(Alert).where(Alert.recipient == "maria")).one()
        mail = session.exec(
            select(Delivery).where(Delivery.user_id == "maria", Delivery.channel == "email")
        ).one()
    found = re.search(r"Acknowledge: (\S+)", mail.body)
    assert found is not None, mail.body
    return alert, urlsplit(found.group(1)).path


async def test_opening_an_ack_link_changes_nothing_and_its_button_acknowledges_once(
    offline_api: Api, tmp_path: Path
) -> None:
    alert, path = breach_for_maria(offline_api, tmp_path)
    http = offline_api.http  # no session: the link stands for maria

    for _ in range(2):  # a scanner fetching the link, then maria opening it
        page = await http.get(path)
        assert page.status_code == 200
        assert 'method="post"' in page.text and f'action="{path}"' in page.text
        assert "Call Lee Park about quote Q-77" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert offline_api.row(Alert, alert.id).acknowledged_at is None

    done = await http.post(path)
    assert done.status_code == 200 and "Acknowledged by maria" in done.text
    row = offline_api.row(Alert, alert.id)
    assert row.acknowledged_by == "maria" and row.acknowledged_at is not None

    again = await http.post(path)
    assert again.status_code == 200
    assert "Already acknowledged by maria at" in again.text
    assert offline_api.row(Alert, alert.id).acknowledged_at == row.acknowledged_at
    assert "Already acknowledged by maria" in (await http.get(path)).text
    assert 'method="post"' not in (await http.get(path)).text


async def test_an_altered_expired_or_unauthorised_ack_link_acknowledges_nothing(
    offline_api: Api, tmp_path: Path
) -> None:
    alert, path = breach_for_maria(offline_api, tmp_path)
    http = offline_api.http
    payload, signature = path.removeprefix("/ack/").split(".")
    altered = f"/ack/{payload}.{signature[:-2]}xx"
    for method in (http.get, http.post):
        answer = await method(altered)
        assert answer.status_code == 400 and "not valid" in answer.text
    secret = ack_secret(app_settings(tmp_path))
    expired = make_token(
        secret, alert_key=alert.key, user="maria", expires_at=datetime.now(UTC) - timedelta(1)
    )
    answer = await http.post(f"/ack/{expired}")
    assert answer.status_code == 400 and "expired" in answer.text
    # a valid signature for someone the access rules refuse (ben may not see maria's alert)
    bens = make_token(
        secret, alert_key=alert.key, user="ben", expires_at=datetime.now(UTC) + timedelta(1)
    )
    answer = await http.post(f"/ack/{bens}")
    assert answer.status_code == 403
    assert (await http.post("/ack/" + "x" * 2000)).status_code == 400
    assert offline_api.row(Alert, alert.id).acknowledged_at is None


async def test_alert_times_read_in_the_process_zone_or_the_readers_own(
    offline_api: Api, tmp_path: Path
) -> None:
    breach_for_maria(offline_api, tmp_path)
    http = offline_api.http
    signed_in_as(offline_api, "maria")
    page = await http.get("/alerts")
    # raised at the due instant: shown in the calendar's zone, labelled
    in_new_york = timefmt.local(DUE, NEW_YORK)
    assert in_new_york.endswith(("EST", "EDT")) and f">{in_new_york}</time>" in page.text
    live = (await http.get("/alerts/live")).json()["html"]
    assert in_new_york in live
    with offline_api.sessions() as session:
        maria = session.get_one(User, "maria")
        maria.timezone = "Europe/Lisbon"
        session.add(maria)
        session.commit()
    page = await http.get("/alerts")
    in_lisbon = timefmt.local(DUE, LISBON)
    assert in_lisbon.endswith(("WET", "WEST")) and in_lisbon in page.text
    assert f">{in_lisbon}</time>" in page.text and f">{in_new_york}</time>" not in page.text


async def test_the_instance_page_renders_titles_and_says_when_a_wait_wakes(api: Api) -> None:
    data = quote("Q-88")
    data["contact"]["name"] = "Dana <Ng>"
    instance = await api.start("quote-follow-up", data)
    task = await api.open_task(instance, "call-customer")
    signed_in_as(api, "ana")
    page = await api.http.get(f"/instances/{instance}")
    assert page.status_code == 200
    diagram = page.text.split('id="diagram"')[1].split("</section>")[0]
    assert "{{" not in diagram and "Dana &lt;Ng&gt;" in diagram and "Q-88" in diagram
    assert re.search(r"due <time [^>]*>\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T</time>", page.text)

    answer = await api.post(f"/api/tasks/{task.id}/complete", "ana", {"outcome": "voicemail"})
    assert answer.status_code == 200, answer.text
    state = await api.state(instance, lambda s: s.wake_at is not None)
    page = await api.http.get(f"/instances/{instance}")
    wake = re.search(r'id="wake">waiting until <time [^>]*>([^<]+)</time>', page.text)
    assert wake is not None, page.text
    assert wake.group(1).endswith(("EST", "EDT")) and state.wake_at is not None


def test_a_title_whose_template_fails_on_the_data_keeps_its_raw_text() -> None:
    from duly.api.web.pages import titled_for
    from duly.language.model import ProcessSpec

    spec = ProcessSpec.model_validate(
        {
            "process": "p",
            "title": "P",
            "version": 1,
            "calendar": "us-east",
            "trigger": {"event": "p.start", "key": "{{ id }}"},
            "start": "a",
            "steps": {
                "a": {"kind": "task", "title": "Call {{ 1 / n }}", "outcomes": {"ok": "b"}},
                "b": {"kind": "task", "title": "Call {{ who }}", "outcomes": {"ok": "c"}},
                "c": {"kind": "end", "result": "done"},
            },
        }
    )
    titled = titled_for(spec, {"n": 0, "who": "Dana"})
    assert getattr(titled.steps["a"], "title", None) == "Call {{ 1 / n }}"
    assert getattr(titled.steps["b"], "title", None) == "Call Dana"
    assert getattr(spec.steps["b"], "title", None) == "Call {{ who }}"  # the definition stays

"""The services' queries on both databases: visibility, order, paging, tokens, events kept once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from duly.language.loader import Definitions
from duly.services.alerts import ack_alert, list_alerts
from duly.services.auth import authenticate, issue_token, principal_of
from duly.services.context import ServiceContext, TemporalProvider
from duly.services.errors import NotAllowed, NotAuthenticated
from duly.services.events import _received, _record
from duly.services.instances import list_instances
from duly.services.schemas import EventIn
from duly.services.tasks import list_tasks
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import session_factory, write_session
from duly.store.models import Alert, Instance, Task

T0 = datetime(2026, 3, 2, 15, tzinfo=UTC)


def seed(engine: Engine, definitions: Definitions) -> None:
    with write_session(session_factory(engine)) as session:
        sync_org(session=session, org=definitions.org)
        for n, process in enumerate(("quote-follow-up", "support-case")):
            session.add(
                Instance(
                    id=f"{process}/K-{n}/run",
                    workflow_id=f"{process}/K-{n}",
                    process=process,
                    version=1,
                    hash="0" * 64,
                    business_key=f"K-{n}",
                    started_at=T0 + timedelta(minutes=n),
                )
            )
        session.flush()
        for step, assignee, due in (
            ("late", "ana", T0 + timedelta(hours=3)),
            ("soon", "ana", T0 + timedelta(hours=1)),
            ("whenever", "ana", None),
            ("bens", "ben", T0 + timedelta(minutes=5)),
        ):
            session.add(
                Task(
                    id=f"quote-follow-up/K-0/run/{step}/1",
                    instance_id="quote-follow-up/K-0/run",
                    process="quote-follow-up",
                    step=step,
                    visit=1,
                    title=step,
                    assignee=assignee,
                    team="inbound-sales",
                    opened_at=T0,
                    due_at=due,
                )
            )
        for key, recipient in (("a:ana", "ana"), ("b:maria", "maria"), ("c:dev", "dev")):
            session.add(
                Alert(key=key, event_key=key[0], level="warning", recipient=recipient, message=key)
            )


def test_visibility_order_and_paging_hold_on_each_database(
    engine: Engine, definitions: Definitions
) -> None:
    seed(engine, definitions)
    sessions = session_factory(engine)
    with sessions() as session:
        ana = principal_of(session=session, user_id="ana")
        maria = principal_of(session=session, user_id="maria")
        omar = principal_of(session=session, user_id="omar")
        inbox = list_tasks(session=session, principal=ana, definitions=definitions, now=T0)
        assert [t.step for t in inbox.items] == ["soon", "late", "whenever"]  # no due time: last
        assert inbox.items[0].business_seconds_left == 3600
        page = list_tasks(
            session=session,
            principal=maria,
            definitions=definitions,
            scope="all",
            limit=2,
            offset=1,
        )
        assert (page.total, [t.step for t in page.items]) == (4, ["soon", "late"])
        assert (
            list_tasks(session=session, principal=omar, definitions=definitions, scope="all").total
            == 0
        )

        assert [a.recipient for a in list_alerts(session=session, principal=omar).items] == ["dev"]
        assert {a.recipient for a in list_alerts(session=session, principal=maria).items} == {
            "ana",
            "maria",
        }
        assert [
            i.process
            for i in list_instances(session=session, principal=omar, definitions=definitions).items
        ] == ["support-case"]
        assert list_instances(session=session, principal=ana, definitions=definitions).total == 1
        dev_alert = next(a.id for a in list_alerts(session=session, principal=omar).items)
    with write_session(sessions) as session:
        with pytest.raises(NotAllowed):
            ack_alert(session=session, principal=maria, alert_id=dev_alert)
    with write_session(sessions) as session:
        assert (
            ack_alert(session=session, principal=omar, alert_id=dev_alert).acknowledged_by == "omar"
        )
    with sessions() as session:
        assert list_alerts(session=session, principal=omar).total == 0
        assert list_alerts(session=session, principal=omar, state="acknowledged").total == 1


def test_tokens_and_events_are_kept_once_on_each_database(
    engine: Engine, definitions: Definitions
) -> None:
    seed(engine, definitions)
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        token = issue_token(session=session, user_id="maria")
    with sessions() as session:
        assert authenticate(session=session, token=token).manages == ("inbound-sales",)
        with pytest.raises(NotAuthenticated):
            authenticate(session=session, token=token + "x")

    async def no_temporal():  # pragma: no cover - never called
        raise AssertionError

    context = ServiceContext(Settings(), definitions, sessions, TemporalProvider(no_temporal))
    event = EventIn(id="evt-1", type="quote.sent", data={"quote": {"id": "Q-1"}})
    assert not _received(context, "evt-1")
    assert _record(context, event, ["quote-follow-up/Q-1/run"])
    assert not _record(context, event, [])  # a second delivery of the same id records nothing
    assert _received(context, "evt-1")

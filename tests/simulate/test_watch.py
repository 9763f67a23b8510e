"""A scenario run jumps to the engine's own timers, found where the interpreter sets them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from duly import temporal_binaries
from duly.client import complete_task, send_event
from duly.demo import STEP
from duly.language.loader import Definitions
from duly.settings import Settings
from duly.simulate.runner import sealed
from duly.simulate.watch import SETTLE, EngineWatch
from duly.store.db import session_factory
from duly.store.models import Instance, Task
from duly.time_skipping import ServerClock, skipping_worker
from duly.worker import prepare_database
from workflows.messages import EventInput

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def test_the_next_moment_is_the_rung_that_reassigns_and_the_wait_that_wakes(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    engine = prepare_database(settings, definitions)
    names = ("quote-follow-up", "lead-follow-up")
    processes = {name: definitions.processes[name] for name in names}

    def open_tasks() -> dict[str, str | None]:
        with Session(engine) as session:
            rows = session.exec(select(Task.step, Task.assignee).where(Task.status == "open"))
            return dict(rows.all())

    numbers = itertools.count()
    async with skipping_worker(sealed(settings), name="test") as run:
        watch = EngineWatch(run.env.client, processes, session_factory(engine))

        async def now() -> datetime:
            return (await run.env.get_current_time()).astimezone(UTC)

        async def sleep_to(moment: datetime) -> None:
            await run.env.sleep(moment - await now())

        async def send(event_type: str, data: dict[str, object]) -> None:
            watch.touch(
                await send_event(
                    run.env.client,
                    definitions,
                    EventInput(id=f"event-{next(numbers)}", type=event_type, data=data),
                    task_queue=run.task_queue,
                )
            )

        # Monday 10:00 in New York, the processes' calendar
        today = (await now()).astimezone(ZoneInfo("America/New_York")).date()
        monday = today + timedelta(days=7 - today.weekday())
        await sleep_to(datetime.combine(monday, time(10), ZoneInfo("America/New_York")))

        # A quote's call is due in two business days; at 150% the ladder hands it to Maria
        quote = {"id": "Q-1", "number": "Q-1", "amount": 9000}
        contact = {"name": "Lee Park", "email": "lee@example.com"}
        await send("quote.sent", {"quote": quote, "contact": contact, "owner": "ben"})
        await run.env.sleep(SETTLE)
        assert open_tasks() == {"call-customer": "ben"}
        moment = await watch.next_moment(await now())
        assert moment is not None and moment > await now() + timedelta(days=2)  # no look each STEP
        await sleep_to(moment - SETTLE - timedelta(minutes=1))
        assert open_tasks() == {"call-customer": "ben"}  # its 75% and 100% rungs only notified
        await sleep_to(moment)
        assert open_tasks() == {"call-customer": "maria"}

        # A lead nobody reached waits two business hours before the second call
        lead = {"id": "L-1", "name": "Kim Ng", "company": "Acme Corp", "source": "web"}
        await send("lead.created", {"lead": lead, "owner": "ana"})
        await run.env.sleep(SETTLE)
        with Session(engine) as session:
            first = session.exec(select(Task).where(Task.step == "first-call")).one()
        await complete_task(run.env.client, first.id, "no-answer", by="ana")
        watch.touch([first.instance_id])
        await run.env.sleep(SETTLE)
        now_ = await now()
        moment = await watch.next_moment(now_)
        assert moment is not None and moment - now_ > STEP  # the wake, asked of the instance
        await sleep_to(moment - SETTLE - timedelta(minutes=1))
        assert "second-call" not in open_tasks()
        await sleep_to(moment)
        assert open_tasks()["second-call"] == "ana"

        # Completed into a wait by the run's driver, whose wake it notes rather than asks
        lead = {"id": "L-2", "name": "Ida Bell", "company": "Bell Co", "source": "web"}
        await send("lead.created", {"lead": lead, "owner": "ben"})
        await run.env.sleep(SETTLE)
        with Session(engine) as session:
            first = session.exec(
                select(Task).where(Task.step == "first-call", Task.assignee == "ben")
            ).one()
        done = await now()
        await complete_task(run.env.client, first.id, "no-answer", by="ben")
        watch.touch([first.instance_id])
        watch.completed(first.instance_id, first.process, first.step, "no-answer", done)
        noted = watch.wakes[first.instance_id]
        with Session(engine) as session:
            workflow = session.get_one(Instance, first.instance_id).workflow_id
        asked = await watch._wake_of(workflow)
        assert asked is not None and abs(noted - asked) < timedelta(seconds=5)
    engine.dispose()


async def test_the_clock_a_run_follows_keeps_to_the_test_servers() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binaries.test_server_path())
    )
    try:
        clock = ServerClock(env)
        began = await clock.read()
        hour = timedelta(hours=1)
        for number in range(1, ServerClock.RESYNC + 3):  # past a reading of the server's time
            followed = await clock.sleep(hour)
            told = (await env.get_current_time()).astimezone(UTC)
            # an hour a sleep, and no further off than the round trips since the last reading
            assert abs(followed - began - number * hour) < timedelta(seconds=5)
            assert abs(told - followed) < timedelta(seconds=5)
    finally:
        await env.shutdown()

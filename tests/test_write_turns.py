"""SQLite writers of one process take turns: urgent ones (SLA work) first, the rest in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlmodel import text

from duly.store import db
from duly.store.write_turns import WriteTurns


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)


def writer(turns: WriteTurns, name: str, order: list[str], *, urgent: bool) -> threading.Thread:
    """A thread that writes its name into `order` in its turn."""

    def write() -> None:
        with turns.turn(urgent=urgent):
            order.append(name)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_an_urgent_writer_goes_before_those_waiting_longer_and_the_rest_keep_their_order() -> None:
    turns, order, release = WriteTurns(patience=60), list[str](), threading.Event()

    def hold() -> None:
        with turns.turn():
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(lambda: turns.held)
    threads = []
    for queued, (name, urgent) in enumerate(
        [("bulk-1", False), ("bulk-2", False), ("alert", True)], start=1
    ):
        threads.append(writer(turns, name, order, urgent=urgent))
        wait_until(lambda n=queued: turns.waiting == n)  # each queued before the next
    release.set()
    for thread in [holder, *threads]:
        thread.join(30)
    assert order == ["alert", "bulk-1", "bulk-2"]


def test_a_write_inside_a_write_on_the_same_thread_is_its_own_turn() -> None:
    turns = WriteTurns(patience=60)
    with turns.turn(), turns.turn(urgent=True):
        pass
    order: list[str] = []
    writer(turns, "next", order, urgent=False).join(30)
    assert order == ["next"]


def test_a_turn_never_handed_back_leaves_the_next_writer_to_sqlites_own_lock() -> None:
    turns, release = WriteTurns(patience=0.2), threading.Event()

    def hold() -> None:
        with turns.turn():
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    wait_until(lambda: turns.held)
    order: list[str] = []
    writer(turns, "went", order, urgent=False).join(30)
    release.set()
    holder.join(30)
    assert order == ["went"] and turns.waiting == 0


def test_write_sessions_to_one_sqlite_file_queue_with_the_urgent_first(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE w (name TEXT)"))
    sessions = db.session_factory(engine)
    release = threading.Event()

    def write(name: str, urgent: bool = False, hold: bool = False) -> threading.Thread:
        def run() -> None:
            with db.write_session(sessions, urgent=urgent) as session:
                session.execute(text("INSERT INTO w VALUES (:n)"), {"n": name})
                if hold:
                    release.wait()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    turns = db.write_turns(engine)
    assert turns is not None
    threads = [write("first", hold=True)]
    wait_until(lambda: turns.held)
    for queued, (name, urgent) in enumerate([("bulk", False), ("alert", True)], start=1):
        threads.append(write(name, urgent))
        wait_until(lambda n=queued: turns.waiting == n)
    release.set()
    for thread in threads:
        thread.join(30)
    with engine.connect() as connection:
        rows = [name for (name,) in connection.execute(text("SELECT name FROM w ORDER BY rowid"))]
    assert rows == ["first", "alert", "bulk"]
    engine.dispose()

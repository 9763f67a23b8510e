"""SQLite writers of one process take turns in order, SLA work first.

SQLite lets one transaction write at a time. A writer that finds the lock taken polls for it,
sleeping up to 100 ms between tries, and whoever polls at the right moment wins: under a bulk
load (a CRM backfill's task rows, thousands of assignment emails) the write of a breach's alert
row could wait seconds behind writers that came later. Inside one process, writers therefore
queue here instead, each handed the lock the moment the one before it commits: urgent writers
(a breach's alert, the deliverer sending alerts) ahead of the rest, the rest in arrival order.
Other processes writing to the same file still meet SQLite's own lock and busy timeout.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteTurns:
    """The queue of one database file's writers in this process."""

    def __init__(self, patience: float) -> None:
        """Writers wait at most `patience` seconds for their turn, then go to SQLite's lock."""
        self.patience = patience
        self._changed = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # (0 urgent | 1 not, arrival): a heap
        self._arrivals = itertools.count()
        self._holder: int | None = None  # the thread whose transaction writes now
        self._depth = 0

    @property
    def held(self) -> bool:
        """Whether a writer holds the turn now."""
        with self._changed:
            return self._holder is not None

    @property
    def waiting(self) -> int:
        """Writers waiting for their turn now."""
        with self._changed:
            return len(self._waiting)

    @contextmanager
    def turn(self, *, urgent: bool = False) -> Iterator[None]:
        """Wait for this writer's turn, hold it for the block, hand it to the next."""
        me = threading.get_ident()
        with self._changed:
            if self._holder == me:  # a write inside a write: the same thread's own turn
                self._depth += 1
            else:
                ticket = (0 if urgent else 1, next(self._arrivals))
                heapq.heappush(self._waiting, ticket)
                taken = self._changed.wait_for(
                    lambda: self._holder is None and self._waiting[0] == ticket, self.patience
                )
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
                if taken:
                    self._holder, self._depth = me, 1
                else:
                    # a writer that never hands back its turn (one awaiting another writer on
                    # the same thread): behave as before there was a queue, and let SQLite's
                    # busy timeout decide
                    self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                if self._holder == me:
                    self._depth -= 1
                    if self._depth == 0:
                        self._holder = None
                        self._changed.notify_all()

"""How often someone may fail to sign in: per user id and per client address.

Failed sign-ins are counted in a sliding window, in this process's memory: a user id with
`per_user.failures` failures in the last `per_user.seconds`, or an address with
`per_address.failures`, is refused (429 with `Retry-After`) until the oldest of them leaves
the window, whatever it sends, the right token included. A successful sign-in clears its user
id's failures (a person who mistyped twice starts afresh); the address keeps its count.

Several web replicas each count on their own, so behind a load balancer that spreads one
client over N replicas the limits are N times these (docs/deploy.md). The number of ids and
addresses remembered is bounded, so a flood of made-up ones cannot exhaust memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request


@dataclass(frozen=True)
class Limit:
    """At most `failures` failed sign-ins in any `seconds`."""

    failures: int
    seconds: float


PER_USER = Limit(failures=10, seconds=600)
"""A user id: ten wrong tokens in ten minutes (people paste tokens; they rarely mistype ten)."""
PER_ADDRESS = Limit(failures=30, seconds=600)
"""A client address: thirty failures in ten minutes, over any user ids."""
MAX_KEYS = 10_000
"""User ids and addresses remembered at most; the least recently failed are forgotten first."""


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in is refused now, and in how many whole seconds to try again."""

    reason: str
    retry_after: int


class LoginLimiter:
    """Counts failed sign-ins per user id and per address; thread-safe.

    Args:
        per_user: The limit per user id (as typed, trimmed).
        per_address: The limit per client address.
        clock: Seconds from any fixed point (`time.monotonic`); tests pass their own.
        max_keys: How many user ids and addresses are remembered at most.
    """

    def __init__(
        self,
        *,
        per_user: Limit = PER_USER,
        per_address: Limit = PER_ADDRESS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._limits = {"user": per_user, "address": per_address}
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, user_id: str, address: str) -> Refusal | None:
        """Whether a sign-in may be tried now: None, or why not and for how long."""
        now = self._clock()
        with self._lock:
            waits = {
                kind: self._wait(kind, key, now)
                for kind, key in (("user", _user_key(user_id)), ("address", address))
            }
        kind, wait = max(waits.items(), key=lambda item: item[1])
        if wait <= 0:
            return None
        limit = self._limits[kind]
        what = "for this user id" if kind == "user" else "from your address"
        seconds = max(1, math.ceil(wait))
        return Refusal(
            f"too many failed sign-ins {what} ({limit.failures} in {_span(limit.seconds)}): "
            f"try again in {_span(seconds)}",
            seconds,
        )

    def failed(self, user_id: str, address: str) -> None:
        """Count a failed sign-in against the user id and the address."""
        now = self._clock()
        with self._lock:
            for kind, key in (("user", _user_key(user_id)), ("address", address)):
                times = self._failures.pop((kind, key), None)
                if times is None:
                    times = deque(maxlen=self._limits[kind].failures)
                times.append(now)
                self._failures[(kind, key)] = times  # now the most recent
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, user_id: str) -> None:
        """Forget the user id's failures: they signed in."""
        with self._lock:
            self._failures.pop(("user", _user_key(user_id)), None)

    def _wait(self, kind: str, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 or less: now); forgets a window gone by."""
        times = self._failures.get((kind, key))
        if not times:
            return 0.0
        limit = self._limits[kind]
        if now - times[-1] >= limit.seconds:
            del self._failures[(kind, key)]  # every failure is older than the window
            return 0.0
        if len(times) < limit.failures:
            return 0.0
        return times[0] + limit.seconds - now


def limiter_of(request: Request) -> LoginLimiter:
    """The app's limiter (`create_app` puts one on `app.state.login_limiter`)."""
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter


def client_address(request: Request) -> str:
    """The address a request came from (behind a proxy: see docs/deploy.md)."""
    return request.client.host if request.client else "unknown"


def _user_key(user_id: str) -> str:
    return user_id.strip()[:200]


def _span(seconds: float) -> str:
    if seconds >= 120:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{math.ceil(seconds)} seconds"

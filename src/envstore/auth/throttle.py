"""Login throttling (A10): failed sign-ins counted per user name and per client address.

A sliding window per key: once ``limit`` failures fell within ``window`` seconds, the key is
blocked until the oldest of them leaves the window, and every attempt (a right password too)
is answered 429 with that wait as ``Retry-After`` without any password being hashed. A
success clears the user's count, never the address's: an attacker holding an account of their
own cannot reset their address by signing in to it between guesses.

The counts live in the memory of the API process (the embedded server is one process), with
at most ``max_keys`` keys per kind (the least recently failed go first), so that a flood of
made-up names cannot grow it without bound.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]


class _Window:
    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self.failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.failures[key]
            return None
        return times

    def wait(self, key: str, now: float) -> float:
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window - now

    def add(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            times = self.failures[key] = deque(maxlen=self.limit)
        times.append(now)
        self.failures.move_to_end(key)
        while len(self.failures) > self.max_keys:
            self.failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self.failures.pop(key, None)


class LoginThrottle:
    """Counts failed logins; says how long a user name or an address must wait."""

    def __init__(
        self,
        *,
        per_user: int,
        per_address: int,
        window: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = _Window(per_user, window, max_keys)
        self._addresses = _Window(per_address, window, max_keys)
        self._clock = clock
        self._lock = threading.Lock()

    def retry_after(self, username: str, address: str) -> int:
        """Whole seconds to wait before this user name may be tried from this address; 0: go."""
        with self._lock:
            now = self._clock()
            wait = max(self._users.wait(username, now), self._addresses.wait(address, now))
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            now = self._clock()
            self._users.add(username, now)
            self._addresses.add(address, now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._users.clear(username)

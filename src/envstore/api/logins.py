"""What stands between a flood of ``POST /login/`` and the rest of the API (A10).

- :class:`~envstore.auth.throttle.LoginThrottle` answers 429 + ``Retry-After`` once a user name
  or a client address failed too often, before any password is hashed.
- Password checks (Argon2id: ~90 ms of a core and 64 MiB each, slow on purpose) run on a small
  executor of their own, ``login_hash_concurrency`` threads, never on the thread pool that
  serves every other route; at most ``login_max_waiting`` logins wait for it (503 beyond), and
  a waiting login holds no thread. So a flood of logins costs a bounded share of the CPU and
  authenticated reads keep their threads.
- A refused login (429, 503) is answered after :data:`REFUSAL_DELAY`: a client that retries at
  once would otherwise turn refusals into a busy loop that takes the CPU instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from envstore.auth.passwords import hash_password, needs_rehash, verify_password
from envstore.auth.throttle import LoginThrottle
from envstore.errors import TooManyRequests, Unavailable
from envstore.settings import Settings

__all__ = ["LoginGuard"]

_T = TypeVar("_T")

REFUSAL_DELAY = 1.0  # seconds; a waiting coroutine, no thread


class LoginGuard:
    def __init__(self, settings: Settings) -> None:
        self.throttle = LoginThrottle(
            per_user=settings.login_max_failures_per_user,
            per_address=settings.login_max_failures_per_address,
            window=settings.login_failure_window,
        )
        self._executor = ThreadPoolExecutor(
            settings.login_hash_concurrency, thread_name_prefix="envstore-password"
        )
        self._max_waiting = settings.login_hash_concurrency + settings.login_max_waiting
        self._pending = 0
        self._lock = threading.Lock()

    async def check(self, username: str, address: str) -> None:
        """Raise :class:`TooManyRequests` while this user name or address is blocked."""
        wait = self.throttle.retry_after(username, address)
        if wait:
            await asyncio.sleep(REFUSAL_DELAY)
            raise TooManyRequests(
                f"too many failed sign-ins; try again in {wait} s", retry_after=wait
            )

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """A place among the logins being checked or waiting; 503 when there is none, before
        the login costs a query or a hash."""
        with self._lock:
            full = self._pending >= self._max_waiting
            if not full:
                self._pending += 1
        if full:
            await asyncio.sleep(REFUSAL_DELAY)
            raise Unavailable("too many sign-ins at once; try again shortly", retry_after=2)
        try:
            yield
        finally:
            with self._lock:
                self._pending -= 1

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """Whether ``password`` matches ``stored`` (a dummy hash stands in for None), and a
        fresh hash when the stored one was made with other parameters."""
        ok = await self._run(verify_password, stored, password)
        if ok and stored is not None and needs_rehash(stored):
            return True, await self._run(hash_password, password)
        return ok, None

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

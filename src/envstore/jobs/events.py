"""Wake-ups for API requests that wait on a build (``?wait=`` on the status and log routes).

The workers of this process call :meth:`BuildEvents.changed` after every write to a build (a
log chunk, a status); a waiting request (an asyncio task on the server's event loop, holding
a future from :meth:`BuildEvents.subscribe`) wakes at once and reads the database again. Nothing is carried but the wake-up, so a missed or extra
one costs nothing: waiters also re-read on their own every ``poll`` seconds, which is all they
get when the build runs on another host (no event reaches this process then).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict

__all__ = ["BuildEvents"]


class BuildEvents:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: defaultdict[int, set[asyncio.Future[None]]] = defaultdict(set)

    def changed(self, build_id: int) -> None:
        """Wake everything waiting on ``build_id``; callable from any thread."""
        with self._lock:
            waiters = self._waiters.pop(build_id, set())
        for future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                future.get_loop().call_soon_threadsafe(_wake, future)

    def subscribe(self, build_id: int) -> asyncio.Future[None]:
        """A future that completes at the next change of ``build_id``; subscribe *before*
        reading the build, so that a change between the read and the wait is not missed.
        Call from the event loop; pair with :meth:`unsubscribe`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters[build_id].add(future)
        return future

    def unsubscribe(self, build_id: int, future: asyncio.Future[None]) -> None:
        with self._lock:
            waiting = self._waiters.get(build_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiters[build_id]

    def waiting(self) -> int:
        """How many requests wait now (for tests and metrics)."""
        with self._lock:
            return sum(len(futures) for futures in self._waiters.values())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

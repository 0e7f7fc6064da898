"""Wake-ups for API requests that wait on a build (``?wait=`` on the status and log routes).

The workers of this process call :meth:`BuildEvents.changed` after every write to a build (a
log chunk, a status); a waiting request (an asyncio task on the server's event loop, holding
a future from :meth:`BuildEvents.subscribe`) wakes at once and reads the database again.
Nothing is carried but the wake-up, so a missed or extra one costs nothing: waiters also
re-read on their own every ``api.waiting.POLL_SECONDS``, which is all they get when the build
runs on another host (no event reaches this process then).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict

__all__ = ["BuildEvents"]


class BuildEvents:
    """Futures waiting on builds, by build and by what they wait for: its status only, or its
    log too (a status change wakes both; a new log chunk only the log's waiters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: defaultdict[tuple[int, bool], set[asyncio.Future[None]]] = defaultdict(set)

    def changed(self, build_id: int, *, log_only: bool = False) -> None:
        """Wake what waits on ``build_id`` (only its log's waiters for ``log_only``); callable
        from any thread."""
        with self._lock:
            waiters = self._waiters.pop((build_id, True), set())
            if not log_only:
                waiters |= self._waiters.pop((build_id, False), set())
        for future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                future.get_loop().call_soon_threadsafe(_wake, future)

    def subscribe(self, build_id: int, *, log: bool = False) -> asyncio.Future[None]:
        """A future that completes at the next change of ``build_id`` (of its status, or with
        ``log`` of its log as well); subscribe *before* reading the build, so that a change
        between the read and the wait is not missed. Call from the event loop; pair with
        :meth:`unsubscribe`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters[(build_id, log)].add(future)
        return future

    def unsubscribe(self, build_id: int, future: asyncio.Future[None]) -> None:
        with self._lock:
            for key in ((build_id, False), (build_id, True)):
                waiting = self._waiters.get(key)
                if waiting is not None and future in waiting:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiters[key]

    def waiting(self) -> int:
        """How many requests wait now (for tests and metrics)."""
        with self._lock:
            return sum(len(futures) for futures in self._waiters.values())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

"""Waking the embedded workers (:mod:`envstore.jobs.inprocess`) for a queued build: one each.

Waking every idle worker for each build made all of them look for it at once; all but one found
nothing, after a claim (a write) that contended with the winner's, on a build's critical path.
Now one idle worker is woken per wake-up, the one idle the shortest time: its runner is warm
(one idle long may have let its runner go, ``runner_idle_seconds``), and so is its thread.
A wake-up that finds no worker waiting is kept, so that a worker which looked at the queue just
before a build was queued looks again instead of sleeping through it.
"""

from __future__ import annotations

import threading

__all__ = ["IdleWorkers"]


class IdleWorkers:
    """The waiting workers, most recently idle last; each waits on an event of its own."""

    def __init__(self, workers: int) -> None:
        self._lock = threading.Lock()
        self._waiting: list[threading.Event] = []
        self._kept = 0  # wake-ups that found nobody waiting (at most one per worker)
        self._workers = max(1, workers)

    def wait(self, wake: threading.Event, timeout: float) -> bool:
        """Wait until woken (True) or ``timeout`` seconds (False); at once if a wake-up is kept."""
        with self._lock:
            if self._kept:
                self._kept -= 1
                return True
            wake.clear()
            self._waiting.append(wake)
        woken = wake.wait(timeout)
        with self._lock:
            if wake in self._waiting:
                self._waiting.remove(wake)
        return woken

    def wake_one(self) -> None:
        """Wake the most recently idle worker, or keep the wake-up for the next one to wait."""
        with self._lock:
            if self._waiting:
                self._waiting.pop().set()
            else:
                self._kept = min(self._kept + 1, self._workers)

    def wake_all(self) -> None:
        """Wake every waiting worker (at shutdown)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for wake in waiting:
            wake.set()

    def waiting(self) -> int:
        """How many workers wait now."""
        with self._lock:
            return len(self._waiting)

"""One idle worker woken per queued build, the most recently idle first (jobs.wakeups)."""

from __future__ import annotations

import threading
import time

from envstore.jobs.wakeups import IdleWorkers


def _waiting(idle: IdleWorkers, count: int) -> None:
    while idle.waiting() < count:  # until the threads have started waiting (no timing asserted)
        time.sleep(0.001)


def test_a_wake_up_wakes_only_the_most_recently_idle_worker() -> None:
    idle = IdleWorkers(3)
    events = [threading.Event() for _ in range(3)]
    woken: list[int] = []
    threads = []
    for number, event in enumerate(events):
        thread = threading.Thread(
            target=lambda n=number, e=event: idle.wait(e, 30) and woken.append(n)
        )
        thread.start()
        threads.append(thread)
        _waiting(idle, number + 1)
    idle.wake_one()
    threads[2].join(30)
    assert woken == [2]
    assert idle.waiting() == 2  # the two others still wait
    idle.wake_all()
    for thread in threads:
        thread.join(30)
    assert sorted(woken) == [0, 1, 2]


def test_a_wake_up_with_nobody_waiting_is_kept_for_the_next_worker() -> None:
    idle = IdleWorkers(2)
    idle.wake_one()  # e.g. a build queued while the only worker was looking at the queue
    assert idle.wait(threading.Event(), 30) is True  # answered at once, not after 30 s
    assert idle.waiting() == 0


def test_kept_wake_ups_are_bounded_by_the_number_of_workers() -> None:
    idle = IdleWorkers(2)
    for _ in range(5):
        idle.wake_one()
    assert idle.wait(threading.Event(), 0) is True
    assert idle.wait(threading.Event(), 0) is True
    assert idle.wait(threading.Event(), 0) is False  # the third waits (timeout 0: at once)

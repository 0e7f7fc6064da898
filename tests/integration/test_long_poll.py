"""``?wait=`` on ``GET /build/{id}/`` and ``GET /build/{id}/logs/``: the request waits for the
build to change, woken by the workers' events or, failing those, by its own re-reads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from envstore.db.engine import session_scope
from envstore.jobs.events import BuildEvents
from envstore.services import worker as svc
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, make_user, submit


def _state(client: TestClient) -> Any:
    return client.app.state.envstore  # type: ignore[attr-defined]


def _in_background(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        out["response"] = call()
        out["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _until_waiting(client: TestClient, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while _state(client).events.waiting() < count:
        assert time.monotonic() < deadline, "the request never started waiting"
        time.sleep(0.02)


def test_status_wait_answers_when_a_worker_claims_the_build(settings: Settings) -> None:
    client = client_for(settings)
    build_id = submit(client)
    thread, out = _in_background(lambda: client.get(f"/api/v1/build/{build_id}/?wait=20"))
    _until_waiting(client)
    state = _state(client)
    with session_scope(state.factory) as db:
        assert svc.claim(db, build_id, "test:0:0") is not None
    state.events.changed(build_id)  # what the embedded queue does after a claim
    thread.join(timeout=20)
    assert out["response"].status_code == 200
    assert out["response"].json()["data"]["status"] == "BUILDING"
    assert out["seconds"] < 15  # woken, not timed out
    assert state.events.waiting() == 0 and state.long_polls == 0


def test_status_wait_notices_a_change_no_event_announced(settings: Settings) -> None:
    """A worker on another host sends no event: the wait re-reads the build on its own."""
    client = client_for(settings)
    build_id = submit(client)
    thread, out = _in_background(lambda: client.get(f"/api/v1/build/{build_id}/?wait=20"))
    _until_waiting(client)
    with session_scope(_state(client).factory) as db:
        assert svc.claim(db, build_id, "elsewhere:1:0") is not None
    thread.join(timeout=20)
    assert out["response"].json()["data"]["status"] == "BUILDING"
    assert out["seconds"] < 15


def test_a_finished_build_is_answered_at_once_at_the_longest_wait(settings: Settings) -> None:
    client = client_for(settings)
    build_id = submit(client)
    complete(client, build_id)
    started = time.monotonic()
    response = client.get(f"/api/v1/build/{build_id}/?wait=30")
    assert response.status_code == 200 and response.json()["data"]["status"] == "COMPLETED"
    logs = client.get(f"/api/v1/build/{build_id}/logs/?wait=30&offset=999999")
    assert logs.status_code == 200
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("wait", ["30.5", "-1", "soon"])
def test_a_wait_out_of_bounds_is_refused(settings: Settings, wait: str) -> None:
    client = client_for(settings)
    build_id = submit(client)
    for path in (f"/api/v1/build/{build_id}/", f"/api/v1/build/{build_id}/logs/"):
        response = client.get(path, params={"wait": wait})
        assert response.status_code == 422, response.text
        assert "wait" in response.json()["message"]


def test_log_wait_answers_with_the_new_lines(settings: Settings) -> None:
    client = client_for(settings)
    build_id = submit(client)
    state = _state(client)
    with session_scope(state.factory) as db:
        svc.claim(db, build_id, "test:0:0")
        svc.append_log(db, build_id, "first line\n", settings.max_log_bytes)
    first = client.get(f"/api/v1/build/{build_id}/logs/")
    offset = int(first.headers["X-Envstore-Log-Offset"])
    url = f"/api/v1/build/{build_id}/logs/?offset={offset}&wait=20"
    thread, out = _in_background(lambda: client.get(url))
    _until_waiting(client)
    with session_scope(state.factory) as db:
        svc.append_log(db, build_id, "second line\n", settings.max_log_bytes)
    state.events.changed(build_id)
    thread.join(timeout=20)
    assert out["response"].text == "second line\n"
    assert int(out["response"].headers["X-Envstore-Log-Offset"]) == offset + len("second line\n")
    assert out["seconds"] < 15


def test_past_max_long_polls_a_request_is_answered_at_once(store_dir: Any, db_url: str) -> None:
    from envstore.settings import load_settings

    settings = load_settings(store_dir=store_dir, database_url=db_url, workers=0, max_long_polls=1)
    client = client_for(settings)
    build_id = submit(client)
    thread, out = _in_background(lambda: client.get(f"/api/v1/build/{build_id}/?wait=20"))
    _until_waiting(client)  # the one long poll allowed
    started = time.monotonic()
    second = client.get(f"/api/v1/build/{build_id}/?wait=20")  # one past the limit
    assert second.status_code == 200 and second.json()["data"]["status"] == "QUEUED"
    assert time.monotonic() - started < 10
    _state(client).events.changed(build_id)  # no change: the first waits on, then times out
    with session_scope(_state(client).factory) as db:
        svc.claim(db, build_id, "test:0:0")
    _state(client).events.changed(build_id)
    thread.join(timeout=20)
    assert out["response"].json()["data"]["status"] == "BUILDING"


def test_waiting_on_a_missing_or_forbidden_build(settings: Settings) -> None:
    client = client_for(settings)
    build_id = submit(client, namespace="admin")  # signed-in users only view default/*
    assert client.get("/api/v1/build/999999/?wait=5").status_code == 404
    assert client.get("/api/v1/build/999999/logs/?wait=5").status_code == 404
    outsider = make_user(client, "outsider", primary_namespace="outsider")
    headers = {"Authorization": f"Bearer {outsider}"}
    started = time.monotonic()
    for path in (f"/api/v1/build/{build_id}/?wait=20", f"/api/v1/build/{build_id}/logs/?wait=20"):
        assert client.get(path, headers=headers).status_code == 403
    assert time.monotonic() - started < 10  # refused before any wait


def test_a_cancel_through_the_api_answers_the_waiters(settings: Settings) -> None:
    client = client_for(settings)
    build_id = submit(client)
    url = f"/api/v1/build/{build_id}/logs/?wait=20&offset=999999"
    thread, out = _in_background(lambda: client.get(f"/api/v1/build/{build_id}/?wait=20"))
    logs_thread, logs_out = _in_background(lambda: client.get(url))
    _until_waiting(client, 2)
    assert client.put(f"/api/v1/build/{build_id}/cancel/").status_code == 200
    thread.join(timeout=20)
    logs_thread.join(timeout=20)
    assert out["response"].json()["data"]["status"] == "CANCELED"
    assert logs_out["response"].status_code == 200
    assert out["seconds"] < 15 and logs_out["seconds"] < 15


def test_events_wake_a_waiter_subscribed_before_the_change() -> None:
    events = BuildEvents()

    async def scenario() -> bool:
        woken = events.subscribe(7)
        threading.Thread(target=events.changed, args=(7,)).start()  # from a worker thread
        try:
            await asyncio.wait_for(woken, 5)
            return True
        finally:
            events.unsubscribe(7, woken)

    assert asyncio.run(scenario())
    assert events.waiting() == 0
    events.changed(7)  # nobody waits: nothing happens


def test_a_log_chunk_wakes_the_log_waiters_only() -> None:
    events = BuildEvents()

    async def scenario() -> tuple[bool, bool]:
        status, log = events.subscribe(7), events.subscribe(7, log=True)
        events.changed(7, log_only=True)
        await asyncio.sleep(0.05)
        woken = (status.done(), log.done())
        events.unsubscribe(7, status)
        events.unsubscribe(7, log)
        return woken

    assert asyncio.run(scenario()) == (False, True)
    assert events.waiting() == 0

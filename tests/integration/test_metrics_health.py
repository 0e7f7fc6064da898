"""``{prefix}/metrics`` and ``/readyz`` (issue 12): what a scrape holds, what it costs, and the
dependencies readiness checks. SQLite and PostgreSQL (M3); the broker is the local Redis."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from envstore.api.app import create_app
from envstore.settings import Settings
from tests.integration.helpers import client_for, submit
from tests.support.cluster import REDIS_URL
from tests.support.server import free_port


def _families(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def test_metrics_hold_builds_queue_latency_and_pool(settings: Settings) -> None:
    with client_for(settings) as client:
        first = submit(client, "six==1.16.0\n")
        submit(client, "six==1.15.0\n")
        client.get(f"/api/v1/build/{first}/")
        client.get("/api/v1/build/999999/")
        client.app.state.envstore_metrics.refresh()  # type: ignore[attr-defined]
        found = _families(client)
    builds = {labels["status"]: value for labels, value in found["envstore_builds"]}
    assert builds == {"QUEUED": 2, "BUILDING": 0, "COMPLETED": 0, "FAILED": 0, "CANCELED": 0}
    assert dict(found["envstore_queue_depth"][0][0]) == {"queue": "database"}
    assert found["envstore_queue_depth"][0][1] == 2
    counts = {
        (labels["route"], labels["status"]): value
        for labels, value in found["envstore_http_request_duration_seconds"]
        if labels.get("le") == "+Inf"
    }
    assert counts[("/api/v1/build/{build_id}/", "200")] == 1  # the template, not the path
    assert counts[("/api/v1/build/{build_id}/", "404")] == 1
    if settings.is_embedded_sqlite:
        return
    pool = {labels["state"]: value for labels, value in found["envstore_db_pool_connections"]}
    assert set(pool) == {"in_use", "idle", "overflow"} and pool["idle"] >= 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a scrape reads no database
def test_a_scrape_costs_under_5ms(settings: Settings) -> None:
    with client_for(settings) as client:
        for n in range(5):
            submit(client, f"six==1.16.0\n# {n}\n")
        metrics = client.app.state.envstore_metrics  # type: ignore[attr-defined]
        metrics.refresh()
        for _ in range(50):  # latency series for many routes and statuses
            client.get("/api/v1/build/1/")
            client.get("/api/v1/environment/")
        timings = []
        for _ in range(50):
            started = time.perf_counter()
            body = metrics.scrape()
            timings.append(time.perf_counter() - started)
    assert b"envstore_builds" in body
    timings.sort()
    assert timings[len(timings) // 2] < 0.005, timings  # the median: the machine is shared


def test_readyz_names_a_broker_that_does_not_answer(settings: Settings) -> None:
    dead = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = TestClient(create_app(dead, start_workers=False))
    try:
        started = time.monotonic()
        response = client.get("/readyz")
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json()["message"] == "broker unavailable"
        assert time.monotonic() - started < 10
        assert client.get("/livez").status_code == 200
    finally:
        client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_readyz_checks_database_broker_and_blob_store(settings: Settings) -> None:
    live = settings.model_copy(update={"broker_url": REDIS_URL, "queue_prefix": "readyz"})
    client = TestClient(create_app(live, start_workers=False))
    try:
        assert client.get("/readyz").json() == {"status": "ok"}
    finally:
        client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_an_exhausted_connection_pool_answers_503_not_500(settings: Settings) -> None:
    """Under overload (L1 with 200 clients on a starved machine) every pooled connection can stay
    busy longer than the pool timeout: that is a 503 with Retry-After, never a 500."""
    client = client_for(settings)
    engine = client.app.state.envstore.engine  # type: ignore[attr-defined]
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
    try:
        response = client.get("/api/v1/environment/")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert response.json()["message"] == "server busy, retry later"
    finally:
        for connection in held:
            connection.close()
    assert client.get("/api/v1/environment/").status_code == 200

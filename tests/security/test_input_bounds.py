"""RELIABILITY.md I1-I4 and I6 through the HTTP API: every bound answers 4xx with a message
naming the limit, fast, and nothing is created for a refused request."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import client_for


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return client_for(settings)


def _submit(client: TestClient, text: str, name: str = "env1", **extra: object) -> tuple[int, str]:
    response = client.post(
        "/api/v1/specification/", json={"specification": text, "environment_name": name, **extra}
    )
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json().get("message") or ""


def _nothing_created(client: TestClient) -> None:
    assert client.get("/api/v1/build/").json()["count"] == 0
    assert client.get("/api/v1/environment/").json()["count"] == 0


def test_I1_body_over_the_limit_is_413_before_parsing(client: TestClient) -> None:
    huge = "six\n" + "#" * (600 * 1024)
    response = client.post(
        "/api/v1/specification/",
        content=b'{"specification": "' + huge.encode() + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "max_spec_bytes" in response.json()["message"]
    _nothing_created(client)


def test_I1_spec_just_over_the_limit_is_413(client: TestClient, settings: Settings) -> None:
    limit = settings.max_spec_bytes
    at_limit = "six\n" + "#" * (limit - 5) + "\n"
    assert _submit(client, at_limit)[0] == 200
    status, message = _submit(client, at_limit + "\n", name="env2")
    assert status == 413 and "max_spec_bytes" in message


def test_I2_ten_thousand_packages(client: TestClient) -> None:
    text = "dependencies:\n" + "".join(f"  - pkg{i}\n" for i in range(10_000))
    started = time.perf_counter()
    status, message = _submit(client, text)
    # No solve and no full parse (the unit test shows the count comes first): seconds even on
    # a loaded machine would mean one crept onto this path.
    assert time.perf_counter() - started < 5
    assert status in (400, 413) and ("max_packages" in message or "max_spec_bytes" in message)
    _nothing_created(client)


def test_I2_package_limit_edge(client: TestClient, settings: Settings) -> None:
    n = settings.max_packages
    assert _submit(client, "\n".join(f"p{i}" for i in range(n)))[0] == 200
    status, message = _submit(client, "\n".join(f"p{i}" for i in range(n + 1)), name="env2")
    assert status == 400 and f"the limit is {n} (max_packages)" in message


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                for i in range(8)
            ),
            "max_yaml_aliases",
        ),
        ("dependencies: " + "[" * 1000 + "]" * 1000, "max_yaml_depth"),
    ],
    ids=["alias-bomb", "depth-1000"],
)
def test_I3_yaml_bombs(client: TestClient, text: str, limit: str) -> None:
    _submit(
        client, "dependencies: []"
    )  # warm up (refused, creates nothing): the bound is on the bomb
    tracemalloc.start()
    started = time.process_time()  # CPU time: what the bomb costs, whatever else the machine does
    status, message = _submit(client, text)
    elapsed = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert status == 400 and limit in message
    assert elapsed < 0.1  # CPU seconds, tracemalloc's own overhead included
    assert peak < 20 * 1024 * 1024
    _nothing_created(client)


def test_I3_python_tags_execute_nothing(client: TestClient, tmp_path: object) -> None:
    status, message = _submit(
        client, "!!python/object/apply:os.system ['touch /tmp/envstore-pwned']"
    )
    assert status == 400 and "tag that is not allowed" in message
    import os

    assert not os.path.exists("/tmp/envstore-pwned")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("environment_name", "../x"),
        ("environment_name", "%2e%2e"),
        ("environment_name", "a\x00b"),
        ("environment_name", "x" * 300),
        ("environment_name", "-rf"),
        ("environment_name", "\u0430dmin"),
        ("namespace", "../../etc"),
        ("namespace", "x/y"),
    ],
)
def test_I4_bad_names_in_the_body(client: TestClient, field: str, value: str) -> None:
    body = {"environment_name": "ok", field: value}
    status, message = _submit(client, "six\n", **body)
    assert status == 400, message
    assert "name" in message or "namespace" in message
    _nothing_created(client)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/environment/%2e%2e/x/", "/api/v1/environment/-x/y/", "/api/v1/namespace/%C3%A4/"],
)
def test_I4_bad_names_in_the_url(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (400, 404)
    assert response.json()["status"] == "error"


def test_bad_json_and_missing_fields_are_422(client: TestClient) -> None:
    response = client.post(
        "/api/v1/specification/", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["status"] == "error"
    missing = client.post("/api/v1/specification/", json={"namespace": "x"})
    assert missing.status_code == 422 and "specification" in missing.json()["message"]
    no_name = client.post("/api/v1/specification/", json={"specification": "six\n"})
    assert no_name.status_code == 400 and "environment name" in no_name.json()["message"]

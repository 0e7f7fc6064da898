"""JSON bodies: a route that returns a :class:`JSONBody` answers the bytes and headers FastAPI
gives a route that returns the same ``dict[str, Any]`` (clients compare bodies byte for byte)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from envstore.api.schemas import JSONBody, ok, ts

CONTENT: dict[str, Any] = {
    "status": "ok",
    "data": {
        "text": 'é ✓ \u2028 "quoted" </script>',
        "numbers": [0, -1, 2**63, 1.5, 1e16, 1e-7, 0.1],
        "nothing": None,
        "flags": [True, False],
        "nested": {"when": datetime(2025, 3, 1, 4, 5), "empty": {}, "list": []},
    },
    "message": None,
}


def _bodies(content: dict[str, Any]) -> tuple[Any, Any]:
    app = FastAPI()

    @app.get("/dict")
    def as_dict() -> dict[str, Any]:
        return content

    @app.get("/body")
    def as_body() -> JSONBody:
        return JSONBody(content)

    client = TestClient(app)
    return client.get("/dict"), client.get("/body")


def test_json_body_is_what_fastapi_makes_of_the_dict() -> None:
    framework, ours = _bodies(CONTENT)
    assert ours.status_code == framework.status_code == 200
    assert ours.content == framework.content
    assert ours.headers["content-type"] == framework.headers["content-type"] == "application/json"
    assert ours.headers["content-length"] == framework.headers["content-length"]


def test_ok_envelope() -> None:
    assert ok([1], "done").body == b'{"status":"ok","data":[1],"message":"done"}'


def test_timestamps_have_no_offset() -> None:
    assert ts(datetime(2025, 3, 1, 4, 5, tzinfo=UTC)) == "2025-03-01T04:05:00"
    assert ts(datetime(2025, 3, 1, 4, 5, 6, 7)) == "2025-03-01T04:05:06.000007"
    assert ts(None) is None

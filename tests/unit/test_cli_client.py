"""The CLI's reading of server answers: every failure becomes one typed, one-line error."""

from __future__ import annotations

import json

import httpx
import pytest

from envstore.cli.client import ServerError, error_from_response
from envstore.cli.main import exit_code_for_error
from envstore.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable

_REQUEST = httpx.Request("GET", "http://envstore.test/api/v1/build/1/")


def _response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers, request=_REQUEST)


@pytest.mark.parametrize(
    ("status", "error_class", "exit_code"),
    [
        (400, InvalidInput, 2),
        (403, Forbidden, 2),
        (404, NotFound, 2),
        (409, Conflict, 2),
        (413, InvalidInput, 2),
        (429, InvalidInput, 2),
        (500, ServerError, 3),
        (502, ServerError, 3),
        (503, Unavailable, 3),
    ],
)
def test_status_maps_to_error_class_and_exit_code(
    status: int, error_class: type[Exception], exit_code: int
) -> None:
    error = error_from_response(_response(status, {"status": "error", "message": "boom"}))
    assert type(error) is error_class
    assert error.message == "boom"
    assert exit_code_for_error(error) == exit_code


def test_multiline_server_message_is_flattened_to_one_line() -> None:
    body = {"status": "error", "message": "spec is invalid:\n  line 3: bad\n\tdependency"}
    error = error_from_response(_response(400, body))
    assert error.message == "spec is invalid: line 3: bad dependency"


def test_fastapi_validation_detail_names_the_field() -> None:
    body = {"detail": [{"loc": ["body", "environment_name"], "msg": "Field required"}]}
    error = error_from_response(_response(422, body))
    assert error.message == "body.environment_name: Field required"


def test_non_json_error_body_uses_text_then_status_line() -> None:
    assert error_from_response(_response(502, "<h1>Bad gateway</h1>")).message == (
        "<h1>Bad gateway</h1>"
    )
    assert error_from_response(_response(500, "")).message == "HTTP 500 Internal Server Error"


def test_very_long_message_is_truncated() -> None:
    error = error_from_response(_response(400, {"message": "x" * 5000}))
    assert len(error.message) == 500
    assert error.message.endswith("...")


def test_retry_after_is_kept_for_unavailable() -> None:
    error = error_from_response(_response(503, {"message": "db down"}, {"Retry-After": "7"}))
    assert isinstance(error, Unavailable)
    assert error.retry_after == 7

"""RELIABILITY.md I13: no route answers 5xx to any input, on SQLite and PostgreSQL.

First the inputs an outside probe found (each was a 500), then a property-based sweep: every
route of the OpenAPI document, its path parameters filled with hostile values (huge and
negative numbers, floats, NUL, unicode, impossible dates) and its declared query parameters
too. Ids and offsets are bounded once, in ``envstore.api.params``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, submit

BIG = "99999999999999999999"

PROBED = [
    ("GET", "/api/v1/build/1e3/", None),
    ("GET", "/api/v1/build/%00/", None),
    ("GET", "/api/v1/build/99999999999999999999999/", None),
    ("GET", "/api/v1/build/2147483648/", None),
    ("GET", f"/api/v1/build/?page={BIG}", None),
    ("GET", f"/api/v1/environment/?page={BIG}", None),
    ("GET", f"/api/v1/namespace/?page={BIG}", None),
    ("GET", f"/api/v1/package/?page={BIG}", None),
    ("GET", f"/api/v1/channel/?page={BIG}", None),
    ("GET", f"/api/v1/build/?environment_id={BIG}", None),
    ("GET", f"/api/v1/build/BUILD/packages/?page={BIG}", None),
    ("GET", "/api/v1/build/BUILD/logs/?offset=9223372036854775808", None),
    ("GET", "/api/v1/resolve/default/env1/?ref=2026-13-45", None),
    ("GET", f"/api/v1/resolve/default/env1/?ref={BIG}", None),
    ("GET", "/api/v1/build/BUILD/diff/99999999999999999999999/", None),
    ("GET", "/api/v1/build/BUILD/diff/2147483648/", None),
    ("POST", "/api/v1/token/", {"exp": 1e20}),
    ("DELETE", "/api/v1/token/99999999999999999999999/", None),
    ("PUT", "/api/v1/environment/default/env1/", {"build_id": 1e20}),
    ("PUT", "/api/v1/environment/default/env1/", {"build_id": 99999999999999999999}),
    ("PUT", "/api/v1/environment/default/env1/", {"build_id": 2147483648}),
]


@pytest.fixture
def client(settings: Settings) -> TestClient:
    client = client_for(settings)
    complete(client, submit(client))
    return client


def test_I13_the_probed_inputs_are_4xx_with_a_message(client: TestClient) -> None:
    for method, path, body in PROBED:
        answer = client.request(method, path.replace("BUILD", "1"), json=body)
        assert 400 <= answer.status_code < 500, (method, path, answer.status_code, answer.text)
        assert answer.json()["status"] == "error" and answer.json()["message"], path


HOSTILE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            "0",
            "-1",
            "1e3",
            "1.5",
            "NaN",
            "inf",
            "\x00",
            "2026-13-45",
            "2026-02-30T25:00",
            "9223372036854775808",
            "2147483648",
            "..",
            "%",
            "ß",
            "\u0663",
            "\uff11",
            " 1",
            "",
        ]
    ),
    st.text(max_size=12),
)


def _routes(client: TestClient) -> list[tuple[str, str, list[str]]]:
    found = []
    for path, item in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in item.items():
            if method in {"get", "delete"}:  # PUT/POST bodies are covered by PROBED and I1-I4
                queries = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
                found.append((method.upper(), path, queries))
    return found


def test_I13_no_route_answers_5xx_to_hostile_parameters(client: TestClient) -> None:
    routes = _routes(client)
    assert len(routes) > 20

    @hsettings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.sampled_from(routes), st.lists(HOSTILE, min_size=4, max_size=4), HOSTILE)
    def probe(route: tuple[str, str, list[str]], values: list[str], query: str) -> None:
        method, template, queries = route
        filled = iter(values * 3)
        path = re.sub(r"\{[^}]+\}", lambda _: quote(next(filled), safe=""), template)
        params: dict[str, Any] = {name: query for name in queries if name != "wait"}
        answer = client.request(method, path, params=params)
        assert answer.status_code < 500, (method, path, params, answer.text[:300])

    probe()

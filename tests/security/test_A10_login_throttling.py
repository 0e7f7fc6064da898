"""A10: failed logins are throttled per user name and per address (429 + Retry-After), and a
flood of logins does not starve authenticated reads (password checks are bounded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from envstore.auth.throttle import LoginThrottle
from envstore.settings import Settings
from tests.integration.helpers import client_for, make_user
from tests.security.conftest import migrated_sqlite
from tests.support.login_flood import measure, signed_in_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_A10_window_edges() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_user=3, per_address=5, window=60, clock=clock)
    for _ in range(2):
        throttle.failed("bob", "10.0.0.1")
    assert throttle.retry_after("bob", "10.0.0.1") == 0  # one below the limit: still allowed
    clock.now += 10
    throttle.failed("bob", "10.0.0.1")
    assert throttle.retry_after("bob", "10.0.0.1") == 50  # until the first failure is 60 s old
    assert throttle.retry_after("bob", "10.0.0.2") == 50  # per user, from any address
    assert throttle.retry_after("carol", "10.0.0.1") == 0
    clock.now += 50
    assert throttle.retry_after("bob", "10.0.0.1") == 0  # the oldest failure left the window
    for name in ("carol", "carol", "dave"):
        throttle.failed(name, "10.0.0.1")
    assert throttle.retry_after("erin", "10.0.0.1") == 0  # 4 from this address in the window
    throttle.failed("dave", "10.0.0.1")
    assert throttle.retry_after("erin", "10.0.0.1") > 0
    throttle.succeeded("bob")
    assert throttle.retry_after("bob", "10.0.0.9") == 0  # a success clears the user...
    assert throttle.retry_after("erin", "10.0.0.1") > 0  # ...never the address


def test_A10_memory_is_bounded() -> None:
    throttle = LoginThrottle(per_user=1, per_address=10**6, window=60, max_keys=100)
    for n in range(1000):
        throttle.failed(f"user{n}", "10.0.0.1")
    assert throttle.retry_after("user999", "x") > 0
    assert throttle.retry_after("user0", "x") == 0  # evicted, least recently failed first


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    settings.login_max_failures_per_user = 3
    settings.login_max_failures_per_address = 5
    client = client_for(settings, user=None)
    make_user(client, "bob")
    make_user(client, "carol")
    yield client


def test_A10_wrong_passwords_then_429_with_retry_after(client: TestClient) -> None:
    wrong = {"username": "bob", "password": "not-his-password"}
    assert [client.post("/login/", json=wrong).status_code for _ in range(3)] == [403] * 3
    blocked = client.post("/login/", json={"username": "bob", "password": "password-bob"})
    assert blocked.status_code == 429  # the right password too: guessing must not pay
    assert 0 < int(blocked.headers["retry-after"]) <= 600
    assert "too many failed sign-ins" in blocked.json()["message"]
    assert "conda-store-auth" not in client.cookies
    # the address has 2 failures left: carol can still sign in, then it is blocked as well
    ok = client.post("/login/", json={"username": "carol", "password": "password-carol"})
    assert ok.status_code == 200
    for _ in range(2):
        client.post("/login/", json={"username": "carol", "password": "wrong-password"})
    form = client.post("/login/", data={"username": "carol", "password": "password-carol"})
    assert form.status_code == 429 and "retry-after" in form.headers
    assert "too many failed sign-ins" in form.text  # the page again, with the reason


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_A10_login_flood_does_not_starve_authenticated_reads(tmp_path: Path) -> None:
    # Thresholds out of the way: every flooding request costs a full Argon2 check.
    env = {
        "ENVSTORE_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
        "ENVSTORE_LOGIN_MAX_FAILURES_PER_USER": "1000000",
    }
    with signed_in_server(tmp_path / "store", env) as (url, cookie):
        flooded = measure(url, cookie, connections=48, seconds=4)
    print(flooded.summary())
    assert flooded.statuses.get(403, 0) > 10  # the flood was real: passwords were checked
    # Starvation put reads at seconds (590 ms median, 8.3 s max before the fix); the goal
    # (p99 < 100 ms) is measured by benchmarks/login_flood.py, not asserted on a shared CI box.
    assert flooded.p50 < 0.5 and flooded.worst < 3.0, flooded.summary()

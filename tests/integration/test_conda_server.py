"""Conda environments through the API with real in-process workers (local channels, no mocks).

Covers ``GET /specification/`` (solve only), conda builds with package records, lockfile
submissions (I8, I9, M4), per-environment virtual packages and channel credentials. Runs on
SQLite and PostgreSQL (M3).
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from envstore.api.app import create_app
from envstore.core.lockfile import Lockfile
from envstore.db.engine import session_scope
from envstore.db.models import BuildLogChunk, Channel
from envstore.settings import Settings
from envstore.testing import ChannelBuilder, demo_channel
from tests.support.server import processes_mentioning

TOKEN = "s3cret-channel-token"


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelBuilder:
    return demo_channel(tmp_path_factory.mktemp("channel"))


class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(401)
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def private_channel(channel: ChannelBuilder) -> Iterator[str]:
    """The demo channel over HTTP, answering 401 without the bearer token."""
    handler = functools.partial(_AuthHandler, directory=str(channel.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def _client(settings: Settings, **changes: Any) -> TestClient:
    """An app with one real worker; the anonymous caller may do everything (access control is
    tested in tests/security, not here)."""
    values = settings.model_dump() | {
        "workers": 1,
        "max_build_attempts": 1,
        "anonymous_role_bindings": {"*/*": ["admin"]},
    }
    values |= changes
    return TestClient(create_app(Settings(**values)))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with _client(settings) as client:
        yield client


def _spec(channel: str, deps: list[Any], **extra: Any) -> str:
    return yaml.safe_dump({"channels": [channel], "dependencies": deps, **extra})


def _submit(client: TestClient, text: str, name: str, **extra: Any) -> int:
    body = {"specification": text, "environment_name": name, **extra}
    response = client.post("/api/v1/specification/", json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["build_id"])


def _wait(client: TestClient, build_id: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build: dict[str, Any] = client.get(f"/api/v1/build/{build_id}/").json()["data"]
        if build["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            return build
        time.sleep(0.2)
    pytest.fail(f"build {build_id} did not finish in {timeout}s")


def _packages(client: TestClient, build_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/build/{build_id}/packages/")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return sorted(rows, key=lambda p: (p["manager"], p["name"]))


def _solve(client: TestClient, **params: Any) -> Any:
    return client.get("/api/v1/specification/", params=params)


# --- GET /specification/ ---------------------------------------------------------------------


def test_solve_only_answers_without_envelope(client: TestClient, channel: ChannelBuilder) -> None:
    response = _solve(client, channel=channel.url, conda=["app"])
    assert response.status_code == 200, response.text
    solve = response.json()["solve"]
    assert set(response.json()) == {"solve"}
    assert [(p["name"], p["version"]) for p in solve] == [("app", "1.0"), ("liba", "2.0")]
    assert all(isinstance(p["size"], int) and p["size"] > 0 for p in solve)
    assert {p["channel"] for p in solve} == {channel.url + "/"}
    assert _channel_rows(client) == {solve[0]["channel_id"]: channel.url + "/"}
    # The conda-store CLI sends ``channels``; the same channel row is reused.
    again = _solve(client, channels=channel.url, conda="liba<2").json()["solve"]
    assert [(p["name"], p["version"]) for p in again] == [("liba", "1.0")]
    assert again[0]["channel_id"] == solve[0]["channel_id"]
    assert len(_channel_rows(client)) == 1


def _channel_rows(client: TestClient) -> dict[int, str]:
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with state.factory() as db:
        return {c.id: c.name for c in db.scalars(select(Channel))}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"channel": "file:///x"}, "at least one package"),
        ({"conda": "app"}, "at least one channel"),
        ({"channel": "ftp://host/ch", "conda": "app"}, "unsupported scheme"),
        ({"channel": "CHANNEL", "conda": "app;rm -rf"}, "invalid conda dependency"),
        ({"channel": "CHANNEL", "conda": ["needs-old", "needs-new"]}, "liba"),
        ({"channel": "CHANNEL", "conda": "no-such-package"}, "no-such-package"),
        ({"channel": "CHANNEL", "conda": "app", "pip": "six"}, "'python'"),
        ({"channel": "CHANNEL/nowhere", "conda": "app"}, "cannot reach channel"),
    ],
)
def test_solve_only_refuses_bad_input_readably(
    client: TestClient, channel: ChannelBuilder, params: dict[str, Any], fragment: str
) -> None:
    for key, value in params.items():
        if isinstance(value, str) and value.startswith("CHANNEL"):
            params[key] = value.replace("CHANNEL", channel.url)
    response = _solve(client, **params)
    assert response.status_code == 400, response.text
    assert response.json()["status"] == "error"
    assert fragment in response.json()["message"]


def test_solve_only_is_bounded_by_the_timeout(settings: Settings) -> None:
    """A channel that never answers ends the request with the solve-only timeout, and the
    solver process (group) is gone afterwards (W7 for the solve-only route)."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hang/"
    try:
        with _client(settings, solve_request_timeout=1.0) as client:
            started = time.monotonic()
            response = _solve(client, channel=url, conda="app")
            elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 400, response.text
    assert "solve_request_timeout" in response.json()["message"]  # our bound ended it
    # not a timing target: only a guard against waiting for the channel (the solver process
    # starts and imports py-rattler first, seconds on a loaded machine; CI failed at 4 s)
    assert elapsed < 20.0
    assert processes_mentioning("envstore.backends.conda_solve") == []


def test_solve_only_beyond_the_concurrency_limit_is_503(
    settings: Settings, channel: ChannelBuilder
) -> None:
    from envstore.services import solve

    with _client(settings, max_concurrent_solves=7) as client:
        slots = solve._slot(7)  # the seven slots taken by solves still running
        for _ in range(7):
            assert slots.acquire(timeout=1)
        try:
            busy = _solve(client, channel=channel.url, conda="app")
        finally:
            for _ in range(7):
                slots.release()
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "5"
        assert _solve(client, channel=channel.url, conda="app").status_code == 200


@pytest.mark.network
def test_solve_only_resolves_the_pip_part(client: TestClient, channel: ChannelBuilder) -> None:
    response = _solve(client, channel=channel.url, conda=["python", "app"], pip="six==1.16.0")
    assert response.status_code == 200, response.text
    rows = {p["name"]: p for p in response.json()["solve"]}
    assert set(rows) == {"app", "liba", "python", "six"}
    assert rows["six"]["version"] == "1.16.0"
    assert rows["six"]["channel"] == "https://pypi.org/simple"
    assert rows["six"]["channel_id"] != rows["app"]["channel_id"]


def test_credentials_reach_the_channel_and_nowhere_else(
    settings: Settings, channel: ChannelBuilder, private_channel: str
) -> None:
    with _client(settings) as anonymous:
        refused = _solve(anonymous, channel=private_channel, conda="app")
    assert refused.status_code == 400
    assert f"cannot reach channel {private_channel}" in refused.json()["message"]
    credentials = {private_channel: {"token": TOKEN}}
    with _client(settings, channel_credentials=credentials) as client:
        solved = _solve(client, channel=private_channel, conda="app")
        assert solved.status_code == 200, solved.text
        build = _wait(client, _submit(client, _spec(private_channel, ["app"]), "private"))
        assert build["status"] == "COMPLETED", build["status_info"]
        log = client.get(f"/api/v1/build/{build['id']}/logs/").text
    assert "solved 2 packages" in log
    assert TOKEN not in log
    configured = Settings(**(settings.model_dump() | {"channel_credentials": credentials}))
    assert TOKEN not in repr(configured) + str(configured.model_dump())


# --- builds ------------------------------------------------------------------------------------


@pytest.mark.network
def test_conda_build_with_pip_section_and_lockfile_resubmission(
    client: TestClient, channel: ChannelBuilder, tmp_path: Path
) -> None:
    text = _spec(channel.url, ["python", "app", {"pip": ["six==1.16.0"]}])
    first = _wait(client, _submit(client, text, "mixed"))
    assert first["status"] == "COMPLETED", first["status_info"]
    packages = _packages(client, first["id"])
    summary = [(p["manager"], p["name"], p["requested"]) for p in packages]
    assert summary == [
        ("conda", "app", True),
        ("conda", "liba", False),
        ("conda", "python", True),
        ("pip", "six", True),
    ]
    for package in packages:
        assert len(package["sha256"]) == 64
        assert package["channel"]["name"]
    by_name = {p["name"]: p for p in packages}
    assert by_name["liba"]["build"] == "0"
    assert by_name["liba"]["channel"]["name"] == channel.url + "/"
    assert by_name["six"]["channel"]["name"] == "https://pypi.org/simple"
    listed = {c["name"] for c in client.get("/api/v1/channel/").json()["data"]}
    assert {channel.url + "/", "https://pypi.org/simple"} <= listed
    found = client.get("/api/v1/package/", params={"search": "liba", "exact": True}).json()
    assert [p["version"] for p in found["data"]] == ["2.0"]

    lock_text = client.get(f"/api/v1/build/{first['id']}/lockfile/").text
    assert {p.manager for p in Lockfile.from_text(lock_text).packages} == {"conda", "pip"}
    # M4: the same lockfile into two environments gives identical records and lockfiles.
    again = [
        _wait(client, _submit(client, lock_text, name, is_lockfile=True))
        for name in ("copy-a", "copy-b")
    ]
    assert [b["status"] for b in again] == ["COMPLETED", "COMPLETED"], again
    locks = [client.get(f"/api/v1/build/{b['id']}/lockfile/").text for b in again]
    assert locks[0] == locks[1] == lock_text
    records = [_packages(client, b["id"]) for b in again]
    assert records[0] == records[1] == packages


def test_wrong_hash_in_lockfile_fails_once_and_installs_nothing(
    settings: Settings, channel: ChannelBuilder
) -> None:
    """I8: FAILED hash_mismatch on the first attempt, never retried, no prefix left."""
    with _client(settings, max_build_attempts=3) as client:
        good = _wait(client, _submit(client, _spec(channel.url, ["app"]), "good"))
        assert good["status"] == "COMPLETED", good["status_info"]
        lock = yaml.safe_load(client.get(f"/api/v1/build/{good['id']}/lockfile/").text)
        for entry in lock["package"]:
            if entry["name"] == "liba":
                entry["hash"]["sha256"] = "0" * 64
        bad = _wait(client, _submit(client, yaml.safe_dump(lock), "bad", is_lockfile=True))
        log = client.get(f"/api/v1/build/{bad['id']}/logs/").text
    assert bad["status"] == "FAILED"
    assert bad["status_info"].startswith("hash_mismatch: liba")
    assert bad["attempt"] == 1
    assert "attempt failed" not in log
    assert not list((settings.store_dir / "builds" / "default").glob(f"*-{bad['id']}-bad"))


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e["hash"].pop("sha256"), "no valid sha256"),
        (lambda e: e.pop("hash"), "misses hash"),
    ],
)
def test_lockfile_without_hashes_is_refused_at_submit(
    client: TestClient, channel: ChannelBuilder, mutate: Any, fragment: str
) -> None:
    """I9: 400 at submit, no build queued."""
    good = _wait(client, _submit(client, _spec(channel.url, ["liba"]), "hashes"))
    lock = yaml.safe_load(client.get(f"/api/v1/build/{good['id']}/lockfile/").text)
    mutate(lock["package"][0])
    before = client.get("/api/v1/build/").json()["count"]
    body = {"specification": yaml.safe_dump(lock), "environment_name": "x", "is_lockfile": True}
    response = client.post("/api/v1/specification/", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]
    assert client.get("/api/v1/build/").json()["count"] == before


def test_virtual_packages_per_environment(client: TestClient, channel: ChannelBuilder) -> None:
    plain = _wait(client, _submit(client, _spec(channel.url, ["glibc-hungry"]), "plain"))
    assert plain["status"] == "FAILED"
    assert plain["status_info"].startswith("solve_failed:")
    assert "__glibc" in plain["status_info"]
    text = _spec(channel.url, ["glibc-hungry"], virtual_packages={"__glibc": "99.1"})
    simulated = _wait(client, _submit(client, text, "simulated"))
    assert simulated["status"] == "COMPLETED", simulated["status_info"]
    assert simulated["specification"]["spec"]["virtual_packages"] == {"__glibc": "99.1"}
    pinned = yaml.safe_load(client.get(f"/api/v1/build/{simulated['id']}/yaml/").text)
    assert pinned["virtual_packages"] == {"__glibc": "99.1"}


def test_a_completed_build_logs_its_diff_and_outcome_in_one_write(
    client: TestClient, channel: ChannelBuilder
) -> None:
    """After COMPLETED (which wakes the waiting client) the worker writes once more: the
    package diff and the closing line together; the runner's last lines came with the outcome."""
    build = _wait(client, _submit(client, _spec(channel.url, ["app"]), "logged"))
    assert build["status"] == "COMPLETED", build["status_info"]
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        chunks = list(
            db.scalars(
                select(BuildLogChunk.text)
                .where(BuildLogChunk.build_id == build["id"])
                .order_by(BuildLogChunk.offset)
            )
        )
    closing = next(n for n, text in enumerate(chunks) if f"build {build['id']} COMPLETED" in text)
    assert chunks[closing].startswith("[envstore] no previous build of this environment")
    assert "== build succeeded" in chunks[closing - 1]  # (a pack job's lines may follow)

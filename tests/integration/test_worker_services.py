"""Worker-side services on SQLite and PostgreSQL: W4 (double delivery), W10 (append-only log
with a cap), requeue/fail after lost attempts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert, text, update

from envstore.db.engine import session_scope
from envstore.db.models import Build, BuildLogChunk
from envstore.services import worker as svc
from envstore.services.builds import read_log
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, submit


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return client_for(settings)


def _factory(client: TestClient) -> Any:
    return client.app.state.envstore.factory  # type: ignore[attr-defined]


def test_W4_the_same_build_delivered_twice_is_built_once(client: TestClient) -> None:
    build_id = submit(client)
    with session_scope(_factory(client)) as db:
        first = svc.claim(db, build_id, "host:1:0")
        second = svc.claim(db, build_id, "host:2:0")
    assert first is not None and first.attempt == 1
    assert second is None


def test_W4_publish_after_cancel_records_nothing(client: TestClient) -> None:
    build_id = submit(client)
    with session_scope(_factory(client)) as db:
        claimed = svc.claim(db, build_id, "host:1:0")
    assert claimed is not None
    assert client.put(f"/api/v1/build/{build_id}/cancel/").status_code == 200
    from envstore.pipeline.contract import BuildResult

    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        published, _ = svc.publish(db, state.blobs, claimed, BuildResult("x", "y", [], 0), "p")
    assert not published
    data = client.get(f"/api/v1/build/{build_id}/").json()["data"]
    assert data["build_artifacts"] == []
    # W11: the worker's publish was the last step; the build must not stay BUILDING
    assert data["status"] == "CANCELED" and data["status_info"] == "canceled: by request"
    again = client.put(f"/api/v1/build/{build_id}/cancel/")
    assert again.status_code == 409 and "CANCELED" in again.json()["message"]


def test_W11_every_way_out_of_a_canceled_build_ends_canceled(client: TestClient) -> None:
    """A cancel requested while BUILDING wins over whatever ends the attempt: a crash, a lost
    worker, a shutdown, a failure; and it is never queued (or claimed) again."""
    ends = [
        lambda db, i: svc.requeue_or_fail(db, i, "worker_lost: gone", 5),
        lambda db, i: svc.requeue_interrupted(db, i, "h:1:0"),
        lambda db, i: svc.finish_failed(db, i, svc.BuildStatus.FAILED, "solve_failed: x"),
    ]
    for end in ends:
        build_id = submit(client)
        with session_scope(_factory(client)) as db:
            assert svc.claim(db, build_id, "h:1:0") is not None
        assert client.put(f"/api/v1/build/{build_id}/cancel/").status_code == 200
        with session_scope(_factory(client)) as db:
            end(db, build_id)
            assert svc.claim(db, build_id, "h:1:0") is None
            assert build_id not in svc.next_queued(db, 1000)
        data = client.get(f"/api/v1/build/{build_id}/").json()["data"]
        assert (data["status"], data["attempt"]) == ("CANCELED", 1)


def test_W11_a_terminal_build_stays_terminal_and_a_queued_canceled_one_is_not_claimed(
    client: TestClient,
) -> None:
    build_id = submit(client)
    with session_scope(_factory(client)) as db:
        assert svc.claim(db, build_id, "h:1:0") is not None
        assert svc.finish_failed(db, build_id, svc.BuildStatus.FAILED, "solve_failed: x")
        # a late report of another worker, or of this one, changes nothing
        assert not svc.finish_failed(db, build_id, svc.BuildStatus.CANCELED, "canceled: late")
        assert svc.requeue_or_fail(db, build_id, "worker_lost", 5) != "QUEUED"
    assert client.get(f"/api/v1/build/{build_id}/").json()["data"]["status"] == "FAILED"
    # a store left by an older version: QUEUED with its cancel requested
    queued = submit(client, "six==1.15.0\n")
    with session_scope(_factory(client)) as db:
        db.execute(update(Build).where(Build.id == queued).values(cancel_requested=True))
        db.commit()
        assert svc.claim(db, queued, "h:1:0") is None
    assert client.get(f"/api/v1/build/{queued}/").json()["data"]["status"] == "CANCELED"


def test_requeue_then_fail_after_max_attempts(client: TestClient) -> None:
    build_id = submit(client)
    with session_scope(_factory(client)) as db:
        assert svc.claim(db, build_id, "h:1:0") is not None
        assert svc.requeue_or_fail(db, build_id, "worker_lost: gone", 2).value == "QUEUED"
        assert svc.claim(db, build_id, "h:1:0") is not None
        assert svc.requeue_or_fail(db, build_id, "worker_lost: gone", 2).value == "FAILED"
    data = client.get(f"/api/v1/build/{build_id}/").json()["data"]
    assert (
        data["status"] == "FAILED" and data["status_info"] == "worker_lost: gone (after 2 attempts)"
    )


def test_W10_appending_costs_the_same_at_line_1_and_line_50000(client: TestClient) -> None:
    build_id = submit(client)
    factory = _factory(client)
    engine = factory.kw["bind"]
    sent: list[tuple[str, int]] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        sent.append((statement.split()[0], len(repr(parameters))))

    def one_append(line: str) -> list[tuple[str, int]]:
        sent.clear()
        event.listen(engine, "before_cursor_execute", record)
        try:
            with session_scope(factory) as db:
                svc.append_log(db, build_id, line, 10**9)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return list(sent)

    at_start = one_append("line 1\n")
    with session_scope(factory) as db:  # 49,998 lines written in one go, as chunks
        size = len("line 1\n")
        rows = []
        for n in range(2, 50_000):
            text = f"line {n}\n"
            rows.append({"build_id": build_id, "offset": size, "text": text})
            size += len(text)
        db.execute(insert(BuildLogChunk), rows)
        db.execute(update(Build).where(Build.id == build_id).values(log_size=size))
    at_end = one_append("line 50000\n")
    assert [s for s, _ in at_start] == [s for s, _ in at_end]  # same statements
    assert [n for _, n in at_end] == pytest.approx(
        [n for _, n in at_start], abs=16
    )  # same bytes sent
    with session_scope(factory) as db:
        text, _ = read_log(db, build_id, size - len("line 49999\n"))
    assert text == "line 49999\nline 50000\n"


def test_W10_log_is_capped_with_a_marker(client: TestClient) -> None:
    build_id = submit(client)
    with session_scope(_factory(client)) as db:
        assert svc.append_log(db, build_id, "a" * 600 + "\n", 1024) is True
        assert svc.append_log(db, build_id, "b" * 600 + "\n", 1024) is False
        assert svc.append_log(db, build_id, "c" * 10 + "\n", 1024) is False
        text, end = read_log(db, build_id)
    assert text.count("log truncated") == 1 and "cccc" not in text
    assert text.startswith("a" * 600 + "\n" + "b" * 423)
    assert end == len(text.encode())


def test_publish_switches_current_build_only_forward(client: TestClient) -> None:
    one = submit(client, "six==1.16.0\n")
    two = submit(client, "six==1.15.0\n")
    complete(client, two, "1.15.0")
    complete(client, one)  # an older build finishing late does not replace the newer one
    env = client.get("/api/v1/environment/default/env1/").json()["data"]
    assert env["current_build_id"] == two


def test_publish_switches_the_link_before_anyone_can_see_the_build_completed(
    client: TestClient,
) -> None:
    """COMPLETED means usable: the environment's link is switched inside the publishing
    transaction, so a reader never sees the build COMPLETED with the old link in place."""
    from envstore.pipeline.contract import BuildResult

    build_id = submit(client)
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        claimed = svc.claim(db, build_id, "host:1:0")
    assert claimed is not None
    seen: list[str] = []

    def switch_link() -> None:  # what another client reads at the moment the link moves
        seen.append(client.get(f"/api/v1/build/{build_id}/").json()["data"]["status"])

    with session_scope(state.factory) as db:
        published, switched = svc.publish(
            db, state.blobs, claimed, BuildResult("x", "y", [], 0), "p", (), switch_link
        )
    assert (published, switched) == (True, True)
    assert seen == ["BUILDING"]
    assert client.get(f"/api/v1/build/{build_id}/").json()["data"]["status"] == "COMPLETED"


def test_D1_a_publish_replayed_after_a_lost_commit_answer_is_not_undone(
    client: TestClient,
) -> None:
    """The executor replays a publish whose commit raised (D1). If that commit had in fact
    succeeded, the replay must answer "published" again: answering "not published" made the
    executor delete the prefix of a COMPLETED build."""
    from envstore.pipeline.contract import BuildResult

    build_id = submit(client)
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        claimed = svc.claim(db, build_id, "host:1:0")
    assert claimed is not None
    result = BuildResult("x", "y", [], 0)
    tail = ("the build's last line\n", 10_000)
    with session_scope(state.factory) as db:
        first = svc.publish(db, state.blobs, claimed, result, "p", log_tail=tail)
    with session_scope(state.factory) as db:
        replay = svc.publish(db, state.blobs, claimed, result, "p", log_tail=tail)
    assert first == replay == (True, True)
    log = client.get(f"/api/v1/build/{build_id}/logs/").text
    assert log.count("the build's last line") == 1  # the replay did not write it again
    other = dataclasses.replace(claimed, worker_id="host:2:0")
    with session_scope(state.factory) as db:  # someone else's attempt is still refused
        assert svc.publish(db, state.blobs, other, result, "p") == (False, False)
    data = client.get(f"/api/v1/build/{build_id}/").json()["data"]
    assert data["status"] == "COMPLETED"
    assert sorted(a["artifact_type"] for a in data["build_artifacts"]).count("LOCKFILE") == 1


def test_a_publish_locks_its_environment_not_the_namespace(client: TestClient) -> None:
    """Environment.namespace is joined eagerly: a plain FOR UPDATE of the environment locked
    the namespace's row too, and every publish of a namespace queued on it (found by review)."""
    from envstore.pipeline.contract import BuildResult

    state = client.app.state.envstore  # type: ignore[attr-defined]
    if not state.settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's (SQLite locks the whole database)")
    build_id = submit(client)
    with session_scope(state.factory) as db:
        claimed = svc.claim(db, build_id, "host:1:0")
    assert claimed is not None
    seen: list[str] = []

    def switch_link() -> None:  # called in the publish's transaction, environment locked
        with state.factory() as other:
            other.execute(text("SET lock_timeout = '2s'"))
            locked = other.execute(
                text("SELECT name FROM namespace WHERE name = 'default' FOR UPDATE")
            ).scalar_one()
            seen.append(locked)
            other.rollback()

    with session_scope(state.factory) as db:
        published = svc.publish(
            db, state.blobs, claimed, BuildResult("x", "y", [], 0), "p", (), switch_link
        )
    assert published == (True, True) and seen == ["default"]

"""The distributed reaper (jobs/distributed.py) against the real broker (the local Redis) on
SQLite and PostgreSQL: lost builds requeued with a backoff or FAILED after the last attempt,
canceled ones never requeued (W11), unsent ones sent (D8), and one leader on PostgreSQL; pack
jobs (archive, image) the same way: lost ones requeued or FAILED, unsent ones sent. Every sender
claims a send before making it, so a reaper pass that falls in the middle of another sender's
send sends nothing more, and a failed send is made again by the next pass."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from envstore.db.engine import make_engine, session_scope
from envstore.db.models import ArtifactJob, Build, utcnow
from envstore.jobs.celery_app import Broker
from envstore.jobs.distributed import Dispatcher, Leadership, Reaper, send_pack
from envstore.services import packing
from envstore.services import worker as svc
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, submit
from tests.support.cluster import REDIS_URL


@pytest.fixture
def reaper(settings: Settings) -> Iterator[Reaper]:
    live = settings.model_copy(
        update={
            "broker_url": REDIS_URL,
            "queue_prefix": f"t{uuid.uuid4().hex[:12]}",
            "heartbeat_timeout": 5.0,
            "retry_backoff": 7.0,
        }
    )
    engine = make_engine(live.resolved_database_url)
    made = Reaper(live, engine, sessionmaker(engine, expire_on_commit=False), Broker.connect(live))
    yield made
    made.leadership.release()
    made.broker.close()
    engine.dispose()


def _lost(reaper: Reaper, build_id: int, *, cancel: bool = False) -> None:
    """``build_id`` BUILDING on a worker whose last heartbeat is a minute old."""
    with session_scope(reaper.factory) as db:
        assert svc.claim(db, build_id, "gone:1:slot") is not None
        db.execute(
            update(Build)
            .where(Build.id == build_id)
            .values(heartbeat_on=utcnow() - timedelta(seconds=60), cancel_requested=cancel)
        )


def _row(reaper: Reaper, build_id: int) -> Build:
    with session_scope(reaper.factory) as db:
        return db.get_one(Build, build_id)


def test_lost_build_is_requeued_with_backoff_then_fails(settings: Settings, reaper: Reaper) -> None:
    with client_for(settings) as client:
        build_id = submit(client)
    _lost(reaper, build_id)
    reaper.reap()
    row = _row(reaper, build_id)
    assert row.status == "QUEUED" and row.attempt == 1 and row.status_info is not None
    assert row.status_info.startswith("requeued: worker_lost: no heartbeat from gone:1:slot")
    assert row.dispatched_on is not None and row.dispatched_on > utcnow() + timedelta(seconds=5)
    assert reaper.broker.depth()["builds"] == 1  # sent once, with its countdown
    _lost(reaper, build_id)  # attempt 2 (the last) is lost too
    reaper.reap()
    row = _row(reaper, build_id)
    assert row.status == "FAILED" and row.attempt == 2
    assert row.status_info is not None and row.status_info.endswith("(after 2 attempts)")
    assert reaper.broker.depth()["builds"] == 1  # a failed build is not sent


def test_W11_lost_canceled_build_is_never_requeued(settings: Settings, reaper: Reaper) -> None:
    with client_for(settings) as client:
        build_id = submit(client)
    _lost(reaper, build_id, cancel=True)
    reaper.reap()
    row = _row(reaper, build_id)
    # one terminal state for a requested cancel, whoever ends it (the worker or the reaper)
    assert row.status == "CANCELED" and row.status_info == "canceled: by request"
    reaper.reap()
    assert _row(reaper, build_id).status == "CANCELED"


def test_D8_unsent_builds_are_sent_once(settings: Settings, reaper: Reaper) -> None:
    with client_for(settings) as client:
        ids = [submit(client, name=f"env{n}") for n in range(3)]
    reaper.reap()
    assert reaper.broker.depth()["builds"] == 3
    assert all(_row(reaper, i).dispatched_on is not None for i in ids)
    reaper.reap()  # sent recently: not again
    assert reaper.broker.depth()["builds"] == 3


def _completed(settings: Settings, name: str = "env1") -> int:
    """A COMPLETED build whose pack job (its archive) is QUEUED and was never sent."""
    with client_for(settings) as client:
        build_id = submit(client, name=name)
        complete(client, build_id, artifacts=("LOCKFILE", "YAML", "LOGS", "CONDA_PACK"))
    return build_id


def _lost_pack(reaper: Reaper, build_id: int) -> None:
    """``build_id``'s pack job PACKING on a worker whose last heartbeat is a minute old."""
    with session_scope(reaper.factory) as db:
        assert packing.claim_pack(db, reaper.settings, build_id, "gone:1:slot") is not None
        db.execute(
            update(ArtifactJob)
            .where(ArtifactJob.build_id == build_id)
            .values(heartbeat_on=utcnow() - timedelta(seconds=60))
        )


def _job(reaper: Reaper, build_id: int) -> ArtifactJob:
    with session_scope(reaper.factory) as db:
        return db.get_one(ArtifactJob, build_id)


def test_D8_unsent_pack_jobs_are_sent_once(settings: Settings, reaper: Reaper) -> None:
    ids = [_completed(settings, name=f"env{n}") for n in range(2)]
    assert reaper.broker.depth()["artifacts"] == 0
    reaper.reap()
    assert reaper.broker.depth()["artifacts"] == 2
    assert all(_job(reaper, i).dispatched_on is not None for i in ids)
    reaper.reap()  # sent recently: not again
    assert reaper.broker.depth()["artifacts"] == 2


def test_lost_pack_job_is_requeued_with_backoff_then_fails(
    settings: Settings, reaper: Reaper
) -> None:
    build_id = _completed(settings)
    reaper.reap()  # sent once (the message the worker lost below had taken)
    work = reaper.settings.work_dir / f"pack-{build_id}-1"
    work.mkdir(parents=True)  # what the lost attempt left
    _lost_pack(reaper, build_id)
    with session_scope(reaper.factory) as db:  # W4: a second delivery claims nothing
        assert packing.claim_pack(db, reaper.settings, build_id, "h:2:0") is None
    reaper.reap()
    job = _job(reaper, build_id)
    assert job.status == "QUEUED" and job.attempt == 1 and not work.exists()
    assert job.info is not None and job.info.startswith("requeued: worker_lost: no heartbeat")
    assert job.dispatched_on is not None and job.dispatched_on > utcnow() + timedelta(seconds=5)
    assert reaper.broker.depth()["artifacts"] == 2  # sent again, once, with its countdown
    _lost_pack(reaper, build_id)  # attempt 2 (the last) is lost too
    reaper.reap()
    job = _job(reaper, build_id)
    assert job.status == "FAILED" and job.attempt == 2
    assert job.info is not None and job.info.endswith("(after 2 attempts)")
    assert reaper.broker.depth()["artifacts"] == 2  # a failed job is not sent
    with session_scope(reaper.factory) as db:
        assert db.get_one(Build, build_id).status == "COMPLETED"  # the build stays usable


def _reap_first(reaper: Reaper, send: Callable[..., None]) -> Callable[..., None]:
    """``send``, its first call run just after a reaper pass: the leader's pass falls between
    another sender's commit and its send (the real broker sends every message)."""
    passes: list[int] = []

    def reaped_then_sent(*args: object, **kwargs: object) -> None:
        if not passes:  # once: the pass's own sends go straight to the broker
            passes.append(1)
            reaper.reap()
        send(*args, **kwargs)

    return reaped_then_sent


def test_W4_reaper_pass_during_the_api_send_sends_the_build_once(
    settings: Settings, reaper: Reaper, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(settings) as client:
        build_id = submit(client)  # committed QUEUED, not yet sent
    monkeypatch.setattr(reaper.broker, "send_build", _reap_first(reaper, reaper.broker.send_build))
    dispatcher = Dispatcher(
        reaper.settings, reaper.leadership.engine, reaper.factory, reaper.broker
    )
    dispatcher._send(build_id)  # what the API's dispatcher thread does after the commit
    assert reaper.broker.depth()["builds"] == 1
    assert _row(reaper, build_id).dispatched_on is not None
    reaper.reap()  # sent recently: not again
    assert reaper.broker.depth()["builds"] == 1


def test_W4_reaper_pass_during_the_worker_pack_send_sends_the_job_once(
    settings: Settings, reaper: Reaper, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_id = _completed(settings)  # its pack job committed QUEUED, not yet sent
    monkeypatch.setattr(reaper.broker, "send_pack", _reap_first(reaper, reaper.broker.send_pack))
    send_pack(reaper.broker, reaper.factory, build_id)  # what a worker does after the publish
    assert reaper.broker.depth()["artifacts"] == 1
    assert _job(reaper, build_id).dispatched_on is not None


def test_D8_a_failed_send_gives_its_claim_back_and_the_next_pass_sends(
    settings: Settings, reaper: Reaper, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(settings) as client:
        ids = [submit(client, name=f"env{n}") for n in range(3)]
    real_send = reaper.broker.send_build
    sent: list[int] = []

    def broker_goes_away(build_id: int, countdown: float = 0.0) -> None:
        if sent:  # the broker fails after the first message
            raise ConnectionError("broker away")
        real_send(build_id, countdown)
        sent.append(build_id)

    monkeypatch.setattr(reaper.broker, "send_build", broker_goes_away)
    with pytest.raises(ConnectionError):
        reaper.reap()
    assert sent == ids[:1] and reaper.broker.depth()["builds"] == 1
    assert [_row(reaper, i).dispatched_on is None for i in ids] == [False, True, True]
    monkeypatch.setattr(reaper.broker, "send_build", real_send)  # the broker is back
    reaper.reap()
    assert reaper.broker.depth()["builds"] == 3  # the two not sent, each once
    assert all(_row(reaper, i).dispatched_on is not None for i in ids)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_one_leader_among_reapers(reaper: Reaper) -> None:
    other = Leadership(reaper.settings, reaper.leadership.engine)
    assert reaper.leadership.held() is True
    assert other.held() is False  # the lock is taken
    reaper.leadership.release()  # the leader goes away: its connection closes
    assert other.held() is True
    other.release()

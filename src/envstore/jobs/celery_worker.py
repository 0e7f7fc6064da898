"""``envstore worker``: a Celery worker that runs builds and GC for the distributed mode.

The worker uses Celery's thread pool: each slot supervises one build process (the same
:class:`BuildExecutor` as the embedded workers), whose heartbeat, log streaming and cancel
polling go through the database; a cancel requested on any API host reaches the slot that runs
the build at its next heartbeat, which kills the build's process tree. A SIGTERM (warm shutdown:
drain) lets running builds finish within ``shutdown_grace``, then kills and queues them again
without counting the attempt (W3). The build processes die with the worker, even on SIGKILL
(they watch their parent), so nothing keeps writing into a prefix the reaper hands to another
worker (W12).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, bootsteps, signals
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from envstore.core.builds import BuildStatus
from envstore.db.engine import make_engine, session_scope
from envstore.db.models import utcnow
from envstore.jobs.celery_app import JOB_KINDS, Broker, make_celery, queue_name, slot_id
from envstore.jobs.distributed import Reaper, backoff, send_pack
from envstore.jobs.events import BuildEvents
from envstore.jobs.executor import BuildExecutor
from envstore.jobs.gc import run_gc
from envstore.jobs.metrics import BuildMetrics
from envstore.jobs.packer import PackExecutor
from envstore.services import dispatch, packing
from envstore.services import worker as svc
from envstore.settings import Settings
from envstore.storage.factory import make_blob_store

__all__ = ["WorkerRuntime", "run_worker"]

log = logging.getLogger("envstore.worker")


@dataclass
class WorkerRuntime:
    """What the tasks of one worker process share."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    executor: BuildExecutor
    packer: PackExecutor
    broker: Broker
    metrics: BuildMetrics
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    @classmethod
    def create(cls, settings: Settings) -> WorkerRuntime:
        engine = make_engine(settings.resolved_database_url)
        factory = sessionmaker(engine, expire_on_commit=False)
        blobs = make_blob_store(settings)
        executor = BuildExecutor(settings, factory, blobs)
        packer = PackExecutor(settings, factory, blobs, executor.runners, BuildEvents())
        registry = CollectorRegistry()
        metrics = BuildMetrics(registry)
        broker = Broker.connect(settings)
        runtime = cls(settings, engine, factory, executor, packer, broker, metrics, registry)
        # after a publish: the archive and image are packed by a task of the artifacts queue
        executor.on_artifacts_queued = runtime._send_pack
        return runtime

    def pack(self, build_id: int) -> str:
        """Run the pack job (archive, image) of ``build_id``; a duplicate delivery is a no-op."""
        worker_id = slot_id()
        with session_scope(self.factory) as db:
            claimed = packing.claim_pack(db, self.settings, build_id, worker_id)
        if claimed is None:  # a duplicate delivery, or taken back by the reaper meanwhile
            return "skipped"
        self.packer.run(claimed, worker_id)
        return "packed"

    def _send_pack(self, build_id: int) -> None:
        send_pack(self.broker, self.factory, build_id)

    def build(self, build_id: int) -> str:
        worker_id = slot_id()
        with session_scope(self.factory) as db:
            claimed = svc.claim(db, build_id, worker_id)
        if claimed is None:  # a duplicate delivery, or canceled meanwhile (W4)
            return "skipped"
        started = time.monotonic()
        self.executor.run(claimed, worker_id)
        with session_scope(self.factory) as db:
            state = dispatch.build_state(db, build_id)
            if state is not None:
                self.metrics.observe_build(db, build_id, state[0], time.monotonic() - started)
        if state is not None and state[0] == BuildStatus.QUEUED:
            self._send_again(build_id, state[1])
        return state[0] if state else "gone"

    def _send_again(self, build_id: int, attempt: int) -> None:
        """A retryable failure or an interrupted attempt: back to the broker (with a backoff
        after a failure); if the broker is away, the reaper sends it later."""
        delay = 0.0 if self.executor.stopping.is_set() else backoff(self.settings, attempt)
        try:
            self.broker.send_build(build_id, countdown=delay)
            with session_scope(self.factory) as db:
                dispatch.mark_dispatched(db, [build_id], utcnow())
        except Exception as exc:
            log.warning("build %s: not sent again now (%s); the reaper will", build_id, exc)

    def gc(self) -> str:
        report = run_gc(self.settings, self.factory, self.executor.blobs)
        log.info(report.summary())
        return report.summary()


class _WakeUp(bootsteps.StartStopStep):  # type: ignore[misc]
    """Wake the consumer's event loop every quarter second.

    With the thread pool, a finished task acknowledges its message from a pool thread, which
    does not wake the loop: with prefetch 1, the slot's next message was fetched only at the
    loop's next timer, seconds later. A short timer bounds that wait.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer: Any) -> None:
        consumer.timer.call_repeatedly(0.25, _nothing)


def _nothing() -> None:
    return None


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=JOB_KINDS["builds"], acks_late=True)  # type: ignore[misc]
    def build(build_id: int) -> str:
        return runtime.build(int(build_id))

    @app.task(name=JOB_KINDS["artifacts"], acks_late=True)  # type: ignore[misc]
    def pack(build_id: int) -> str:
        return runtime.pack(int(build_id))

    @app.task(name=JOB_KINDS["gc"], acks_late=True)  # type: ignore[misc]
    def gc() -> str:
        return runtime.gc()


def run_worker(settings: Settings, concurrency: int, kinds: list[str]) -> None:
    """Serve the queues of ``kinds`` until a signal stops the worker."""
    runtime = WorkerRuntime.create(settings)
    app = make_celery(settings)
    register_tasks(app, runtime)
    app.steps["consumer"].add(_WakeUp)
    reaper = Reaper(settings, runtime.engine, runtime.factory, runtime.broker)
    # The work directory is not cleaned here as the embedded server does: the store may be
    # shared with other workers' running builds (each attempt has its own directory).

    def shutting_down(**_: Any) -> None:
        runtime.executor.stop(settings.shutdown_grace)

    signals.worker_shutting_down.connect(shutting_down, weak=False)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, registry=runtime.registry)
    reaper.start()
    queues = ",".join(queue_name(settings, kind) for kind in kinds)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={queues}",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--loglevel=INFO",
                f"--hostname=envstore-{os.getpid()}@%h",
            ]
        )
    finally:
        reaper.stop()
        runtime.executor.runners.close_all()
        runtime.broker.close()
        runtime.engine.dispose()

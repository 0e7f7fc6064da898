"""The distributed mode's Celery app: one task per job kind, each on its own queue.

Queues (``<queue_prefix>.<kind>``): ``builds`` (``envstore.build``), ``artifacts`` (packing jobs
that run after a build completed, at a lower priority) and ``gc`` (``envstore.gc``). A worker
serves the queues it is given (``envstore worker --queues``), so packing and GC can run on other
hosts than builds.

A message carries only a build id: the database says what to do with it. The task claims the
build with the same conditional update as the embedded workers, so a duplicate delivery (a
redelivery after a lost ack, a re-dispatch by the reaper) finds it taken and does nothing (W4).
Messages are acknowledged after the task (acks late) and a worker reserves one at a time per
slot (prefetch 1); Redis' visibility timeout is longer than the longest build, so a running
build's message is never handed to a second worker while the first still runs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envstore.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["JOB_KINDS", "Broker", "leader_key", "make_celery", "queue_name", "slot_id"]

log = logging.getLogger("envstore.jobs")

# job kind -> Celery task name; each kind has its own queue of the same name
JOB_KINDS = {"builds": "envstore.build", "artifacts": "envstore.pack", "gc": "envstore.gc"}

# Sending gives up quickly when the broker is away: the build row is committed already and the
# reaper sends it again once the broker answers (W6, D8), so a request never waits on a broker.
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def queue_name(settings: Settings, kind: str) -> str:
    return f"{settings.queue_prefix}.{kind}"


def make_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings.broker_url`` (tasks are registered by the worker only).

    Celery and kombu are imported here: the embedded mode (no broker) never loads them.
    """
    from celery import Celery
    from kombu import Queue as BrokerQueue

    if not settings.broker_url:
        raise ValueError("the distributed mode needs ENVSTORE_BROKER_URL")
    app = Celery("envstore", broker=settings.broker_url, set_as_current=False)
    queues = [BrokerQueue(queue_name(settings, kind)) for kind in JOB_KINDS]
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_queues=queues,
        task_default_queue=queue_name(settings, "builds"),
        task_routes={task: {"queue": queue_name(settings, k)} for k, task in JOB_KINDS.items()},
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker outlives any broker outage (D8)
        broker_transport_options={
            # longer than the longest build: a running build's message stays with its worker
            "visibility_timeout": int(settings.build_timeout + 600),
            "socket_connect_timeout": 3,
        },
        broker_heartbeat=30,
        task_publish_retry_policy=_PUBLISH_RETRY,
        # a broker blip must not kill running builds: their state lives in the database
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


@dataclass
class Broker:
    """What API processes and the reaper send: build, packing and GC jobs."""

    settings: Settings
    app: Celery

    @classmethod
    def connect(cls, settings: Settings) -> Broker:
        return cls(settings, make_celery(settings))

    def send_build(self, build_id: int, countdown: float = 0.0) -> None:
        self._send("builds", [build_id], countdown)

    def send_pack(self, build_id: int, countdown: float = 0.0) -> None:
        """The pack job (archive, image) of a COMPLETED build, on the artifacts queue."""
        self._send("artifacts", [build_id], countdown)

    def send_gc(self) -> None:
        self._send("gc", [], 0.0)

    def _send(self, kind: str, args: list[Any], countdown: float) -> None:
        self.app.send_task(
            JOB_KINDS[kind],
            args=args,
            queue=queue_name(self.settings, kind),
            countdown=countdown or None,
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )

    def ping(self) -> None:
        """Raise when the broker does not answer within a few seconds (``/readyz``)."""
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def depth(self) -> dict[str, int]:
        """Messages waiting in each queue (not counting those a worker holds)."""
        found = {}
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            for kind in JOB_KINDS:
                # a queue no worker has declared yet does not exist (RabbitMQ) and a failed
                # passive declare closes its channel: one channel per queue
                channel = connection.channel()
                try:
                    declared = channel.queue_declare(
                        queue=queue_name(self.settings, kind), passive=True
                    )
                    found[kind] = int(declared.message_count)
                except connection.channel_errors:
                    found[kind] = 0
                finally:
                    with contextlib.suppress(
                        *connection.connection_errors, *connection.channel_errors
                    ):
                        channel.close()
        return found

    def close(self) -> None:
        self.app.close()


def leader_key(settings: Settings) -> int:
    """The advisory lock that makes one reaper the leader among the processes of one
    deployment (one per ``queue_prefix``)."""
    return zlib.crc32(f"envstore-reaper:{settings.queue_prefix}".encode())


def slot_id() -> str:
    """This worker slot's id in the build row: host, process and thread (unique per slot)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"[:128]

"""Run one claimed build attempt in a child process and record its outcome.

The build runs in the worker's runner process (:mod:`envstore.jobs.runners`), in its own
process group so that a cancel or a timeout kills the whole tree (uv and its children
included). Its stdout is the build log: a reader thread collects lines and the supervising
loop appends them to the database in chunks, refreshes the heartbeat and watches for cancel
requests.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from envstore.core.builds import BuildStatus, packed_artifacts
from envstore.db.engine import session_scope
from envstore.errors import Conflict, Unavailable
from envstore.jobs.events import BuildEvents
from envstore.jobs.runners import BuildSession, RunnerPool
from envstore.pipeline.contract import (
    FAILURE_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    BuildFailureInfo,
    BuildRequest,
    BuildResult,
)
from envstore.services import worker as svc
from envstore.services.diff import diff_builds, format_diff, previous_build_id
from envstore.services.packing import effective_build_artifacts
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore
from envstore.storage.layout import StoreLayout

__all__ = ["BuildExecutor"]

T = TypeVar("T")

_FLUSH_SECONDS = 0.25


@dataclass
class _Outcome:
    returncode: int | None
    canceled: bool = False
    timed_out: bool = False
    interrupted: bool = False  # the server is shutting down and the grace period ran out
    tail: str = ""  # the log lines not yet written when the build ended: written with its outcome


class JobWriter:
    """What a build executor and a pack executor both write: a job's outcome, durably, and
    its log, losing nothing to a database blip (D1)."""

    settings: Settings
    factory: sessionmaker[Session]
    events: BuildEvents

    def _durably(self, build_id: int, action: Callable[[Session], T]) -> T:
        """Run ``action`` on ``build_id`` in a transaction, retrying while the database is
        unavailable: a build's (or pack job's) outcome is never lost to a blip, for up to
        ``db_retry_seconds``; waiters on the build are woken afterwards."""
        deadline = time.monotonic() + self.settings.db_retry_seconds
        pause = 0.25
        while True:
            try:
                with session_scope(self.factory) as db:
                    outcome = action(db)
                self.events.changed(build_id)
                return outcome
            except Unavailable:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _log(self, build_id: int, text: str) -> bool:
        """Append ``text`` to the build's log; False, with nothing written, while the
        database is away."""
        try:
            with session_scope(self.factory) as db:
                svc.append_log(db, build_id, text, self.settings.max_log_bytes)
        except Unavailable:
            return False
        self.events.changed(build_id, log_only=True)
        return True

    def _flush(self, build_id: int, session: BuildSession) -> None:
        """Move the lines a running session printed into the log; kept for the next flush
        while the database is away."""
        text = session.take_lines()
        if text and not self._log(build_id, text):
            session.put_back(text)


class BuildExecutor(JobWriter):
    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        events: BuildEvents | None = None,
    ) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.runners = RunnerPool(settings)
        self._stop_deadline = float("inf")
        self.factory = factory
        self.blobs = blobs
        self.events = events or BuildEvents()
        self.layout = StoreLayout(settings.envs_dir)
        # worker id -> the build it is running: the reaper's check that a BUILDING build of a
        # live worker is really being run (if not, it is as lost as one of a dead worker)
        self.running: dict[str, int] = {}
        # Called after a build is published with a pack job queued (a distributed queue
        # dispatches the job here; the embedded workers find it on their next claim).
        self.on_artifacts_queued: Callable[[int], None] | None = None

    def run(self, claimed: svc.ClaimedBuild, worker_id: str) -> None:
        """Build ``claimed`` to a terminal state (or back to QUEUED for a retry)."""
        self.running[worker_id] = claimed.id
        try:
            self._run(claimed, worker_id)
        finally:
            self.running.pop(worker_id, None)

    def _run(self, claimed: svc.ClaimedBuild, worker_id: str) -> None:
        prefix = self.layout.prefix(claimed.namespace, claimed.build_key)
        work = self.settings.work_dir / f"{claimed.id}-{claimed.attempt}"
        shutil.rmtree(prefix, ignore_errors=True)  # a dead earlier attempt may have left it
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        try:
            request = self._request(claimed, prefix, work)
            request.write(work / REQUEST_FILE)
            outcome = self._supervise(claimed, work, worker_id)
            self._conclude(claimed, outcome, prefix, work)
        except Exception as exc:  # never leave a build BUILDING because of our own bug
            shutil.rmtree(prefix, ignore_errors=True)
            self._finish(claimed, BuildStatus.FAILED, f"internal_error: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _request(self, claimed: svc.ClaimedBuild, prefix: Path, work: Path) -> BuildRequest:
        store = self.settings.store_dir
        return BuildRequest(
            build_id=claimed.id,
            build_key=claimed.build_key,
            kind="conda" if claimed.kind == "conda" else "pypi",
            spec=claimed.spec,
            prefix=str(prefix),
            work_dir=str(work),
            uv_cache_dir=str(self.settings.uv_cache_dir),
            conda_pkgs_dir=str(store / "pkgs"),
            repodata_cache_dir=str(store / "cache" / "repodata"),
            lockfile=claimed.lockfile_text,
            as_of=claimed.as_of.isoformat() if claimed.as_of else None,
            pypi_index_url=self.settings.pypi_index_url,
            default_python=self.settings.default_python,
            solve_timeout=self.settings.solve_timeout,
            platform=self.settings.conda_platform if claimed.kind == "conda" else None,
            channel_alias=self.settings.channel_alias,
            channel_allow=list(self.settings.channel_allow),
            channel_credentials={
                prefix: credential.as_dict()
                for prefix, credential in self.settings.channel_credentials.items()
            },
            virtual_packages=dict(self.settings.virtual_packages),
            run_link_scripts=self.settings.run_link_scripts,
            policy=claimed.policy,
        )

    def _supervise(self, claimed: svc.ClaimedBuild, work: Path, worker_id: str) -> _Outcome:
        session = self._send(work / REQUEST_FILE)
        runner = session.runner
        session.put_back(  # written with the build's first lines: one transaction fewer
            f"[envstore] build {claimed.id} attempt {claimed.attempt} ({claimed.kind}) on "
            f"{worker_id}, runner pid {runner.pid} (its build {runner.builds})\n"
        )
        deadline = time.monotonic() + self.settings.build_timeout
        # the claim wrote the first heartbeat; a cancel wakes no one sooner anyway
        next_beat = time.monotonic() + self.settings.heartbeat_interval
        outcome = _Outcome(None)
        while True:
            finished = session.done.is_set()
            if not finished and time.monotonic() > deadline:
                outcome.timed_out = True
            elif not finished and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.settings.heartbeat_interval
                outcome.canceled = self._beat(claimed.id, worker_id)
            if not finished and self._grace_over():
                outcome.interrupted = True
            killed = outcome.timed_out or outcome.canceled or outcome.interrupted
            if killed:
                runner.kill()
                finished = True
            if finished:
                session.reader.join(timeout=10)
                outcome.tail = session.take_lines()
            else:
                self._flush(claimed.id, session)
            if finished:
                if session.code is not None and not killed:
                    outcome.returncode = session.code
                    self.runners.release(runner, reusable=session.more)
                else:
                    if not killed:  # it died on its own: its tools may outlive it
                        runner.kill()
                    outcome.returncode = runner.process.wait()
                    self.runners.discard(runner)
                return outcome
            # Wakes as soon as the build ends, so a quick build is not charged a full tick.
            session.done.wait(timeout=_FLUSH_SECONDS)

    def _send(self, request: Path) -> BuildSession:
        """Hand ``request`` to this worker's runner (a new one if it has gone meanwhile)."""
        runner = self.runners.acquire()
        try:
            return runner.start(request)
        except OSError:  # it exited between two builds: one fresh try, whose error is real
            self.runners.discard(runner)
            return self.runners.acquire().start(request)

    def stop(self, grace: float) -> None:
        """Ask running builds to finish within ``grace`` seconds; after that they are killed
        and queued again (W3), without counting the interrupted attempt."""
        self._stop_deadline = time.monotonic() + grace
        self.stopping.set()
        self.runners.stopping.set()

    def _grace_over(self) -> bool:
        return self.stopping.is_set() and time.monotonic() > self._stop_deadline

    def _beat(self, build_id: int, worker_id: str) -> bool:
        try:
            with session_scope(self.factory) as db:
                return svc.heartbeat(db, build_id, worker_id)
        except Unavailable:
            return False  # a database blip must not fail the build (D1)

    def _conclude(
        self, claimed: svc.ClaimedBuild, outcome: _Outcome, prefix: Path, work: Path
    ) -> None:
        result_file, failure_file = work / RESULT_FILE, work / FAILURE_FILE
        ended = outcome.interrupted or outcome.canceled or outcome.timed_out
        if not ended and outcome.returncode == 0 and result_file.exists():
            self._publish(claimed, BuildResult.read(result_file), prefix, outcome.tail)
            return
        if outcome.tail:
            self._log(claimed.id, outcome.tail)
        if outcome.interrupted:
            shutil.rmtree(prefix, ignore_errors=True)
            self._log(
                claimed.id, "[envstore] server shutting down: build interrupted, queued again\n"
            )
            self._durably(
                claimed.id, lambda db: svc.requeue_interrupted(db, claimed.id, claimed.worker_id)
            )
        elif outcome.canceled:
            shutil.rmtree(prefix, ignore_errors=True)
            self._log(claimed.id, "[envstore] build canceled; process tree killed\n")
            self._finish(claimed, BuildStatus.CANCELED, "canceled: by request")
        elif outcome.timed_out:
            shutil.rmtree(prefix, ignore_errors=True)
            self._finish(
                claimed,
                BuildStatus.FAILED,
                f"timeout: the build ran longer than {self.settings.build_timeout:g} s "
                "(build_timeout)",
            )
        elif failure_file.exists():
            shutil.rmtree(prefix, ignore_errors=True)
            failure = BuildFailureInfo.read(failure_file)
            info = f"{failure.reason}: {failure.message}"
            if failure.retryable:
                self._retry(claimed, info)
            else:
                self._finish(claimed, BuildStatus.FAILED, info)
        else:
            shutil.rmtree(prefix, ignore_errors=True)
            code = outcome.returncode or 0
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self._retry(claimed, f"worker_lost: the build process {how}")

    def _publish(
        self, claimed: svc.ClaimedBuild, result: BuildResult, prefix: Path, tail: str = ""
    ) -> None:
        key = str(prefix.relative_to(self.settings.store_dir))
        link = _LinkSwitch(self, claimed)
        packs: list[str] = []

        def record(db: Session) -> tuple[bool, bool]:
            # The archive and image are made after COMPLETED, by a pack job queued here.
            kinds = effective_build_artifacts(
                db, self.settings, claimed.namespace, claimed.environment
            )
            packs[:] = packed_artifacts(kinds)
            last_lines = (tail, self.settings.max_log_bytes)
            return svc.publish(db, self.blobs, claimed, result, key, kinds, link.switch, last_lines)

        try:
            published, _ = self._durably(claimed.id, record)
        except BaseException:
            link.restore()  # the build was not recorded: the link shows what it showed
            raise
        if not published:
            link.restore()
            shutil.rmtree(prefix, ignore_errors=True)
            self._log(claimed.id, "[envstore] not published: the build was canceled meanwhile\n")
            return
        # One log write after COMPLETED (the waiting client is woken by the commit above).
        text = self._diff_text(claimed.id)
        if link.problem:
            text += f"[envstore] environment link not switched: {link.problem}\n"
        text += (
            f"[envstore] build {claimed.id} COMPLETED: {len(result.packages)} packages, "
            f"{result.size} bytes at {prefix}\n"
        )
        self._log(claimed.id, text)
        if packs and self.on_artifacts_queued is not None:  # a pack job was queued
            self.on_artifacts_queued(claimed.id)

    def _diff_text(self, build_id: int) -> str:
        """The log lines of the package diff against the environment's previous build."""
        try:
            with session_scope(self.factory) as db:
                previous = previous_build_id(db, build_id)
                text = (
                    format_diff(diff_builds(db, previous, build_id))
                    if previous
                    else "no previous build of this environment to diff against\n"
                )
        except Exception as exc:  # the diff is informative; it must never fail a build
            text = f"diff against the previous build unavailable: {exc}\n"
        return "[envstore] " + text

    def _retry(self, claimed: svc.ClaimedBuild, reason: str) -> None:
        self._log(claimed.id, f"[envstore] attempt failed: {reason}\n")
        attempts = self.settings.max_build_attempts
        self._durably(
            claimed.id,
            lambda db: svc.requeue_or_fail(db, claimed.id, reason, attempts, claimed.worker_id),
        )

    def _finish(self, claimed: svc.ClaimedBuild, status: BuildStatus, info: str) -> None:
        """End the build FAILED or CANCELED (CANCELED whenever a cancel was requested), unless
        it is no longer this worker's: a build reaches exactly one terminal state."""
        self._log(claimed.id, f"[envstore] build {status.value}: {info}\n")
        self._durably(
            claimed.id,
            lambda db: svc.finish_failed(db, claimed.id, status, info, claimed.worker_id),
        )


class _LinkSwitch:
    """Switches an environment's link to a build from inside the publishing transaction
    (:func:`envstore.services.worker.publish`), and puts the previous target back if that
    transaction does not commit."""

    def __init__(self, executor: BuildExecutor, claimed: svc.ClaimedBuild) -> None:
        self.layout = executor.layout
        self.claimed = claimed
        self.previous: str | None = None
        self.switched = False
        self.problem: str | None = None

    def switch(self) -> None:
        namespace, environment = self.claimed.namespace, self.claimed.environment
        try:
            link = self.layout.check_link(namespace, environment)
            if not self.switched:
                self.previous = str(link.readlink()) if link.is_symlink() else None
            self.layout.publish(namespace, environment, self.claimed.build_key)
            self.switched = True
        except Conflict as exc:  # the build is complete; only its link could not be made
            self.problem = str(exc)

    def restore(self) -> None:
        if not self.switched:
            return
        with contextlib.suppress(OSError, Conflict):
            self.layout.restore_link(self.claimed.namespace, self.claimed.environment,
                                     self.previous)  # fmt: skip
        self.switched = False

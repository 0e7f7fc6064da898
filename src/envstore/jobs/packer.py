"""Run one claimed pack job: a COMPLETED build's archive and image, after the build.

The job is one unit that any worker can run once it has claimed it
(:func:`envstore.services.packing.claim_pack`): the embedded workers do when no build waits,
a distributed worker can do the same. If another live build has the same pack key (same
lockfile and packing settings), its blobs are linked and nothing is packed. Otherwise the
worker's warm runner packs the published prefix (``PackRequest``), in its own process group
as builds are (a timeout or a shutdown kills the tree), and the files are uploaded, verified
by digest, before one transaction links them and ends the job. Its log lines are appended to
the build's log. A failure ends the job FAILED and leaves the build COMPLETED.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from envstore.db.engine import session_scope
from envstore.errors import Unavailable
from envstore.jobs.events import BuildEvents
from envstore.jobs.executor import JobWriter
from envstore.jobs.runners import BuildSession, RunnerPool
from envstore.pipeline.contract import (
    FAILURE_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    BuildFailureInfo,
    PackRequest,
    PackResult,
)
from envstore.services import packing as svc
from envstore.services.artifacts import StagedBlob, store_artifact_files
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore
from envstore.storage.layout import StoreLayout

__all__ = ["PackExecutor"]


_TICK_SECONDS = 0.25


class PackExecutor(JobWriter):
    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        runners: RunnerPool,
        events: BuildEvents,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.blobs = blobs
        self.runners = runners  # the build workers' runners: a pack reuses a warm one
        self.events = events
        self.layout = StoreLayout(settings.envs_dir)
        self.stopping = threading.Event()

    def run(self, claimed: svc.ClaimedPack, worker_id: str) -> None:
        """Pack ``claimed`` to COMPLETED or FAILED (or back to QUEUED at a shutdown)."""
        start = time.monotonic()
        work = self.settings.work_dir / f"pack-{claimed.build_id}-{claimed.attempt}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            if self._reuse(claimed, worker_id):
                return
            work.mkdir(parents=True)
            request = PackRequest(
                build_id=claimed.build_id,
                prefix=str(self.layout.prefix(claimed.namespace, claimed.build_key)),
                work_dir=str(work),
                kinds=claimed.kinds,
                variables=claimed.variables,
                oci_prefix=self.settings.oci_prefix,
                oci_base_layer=str(self.settings.oci_base_layer or "") or None,
                layer_compression=self.settings.oci_layer_compression,
                zstd_level=self.settings.oci_zstd_level,
            )
            request.write(work / REQUEST_FILE)
            self._log(claimed.build_id, f"[envstore] packing {', '.join(claimed.kinds)}\n")
            code = self._supervise(claimed, work, worker_id)
            if code is not None:
                self._conclude(claimed, work, worker_id, start)
        except Exception as exc:  # never leave a job PACKING because of our own bug
            self._fail(claimed.build_id, worker_id, f"internal_error: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def stop(self) -> None:
        self.stopping.set()

    def _reuse(self, claimed: svc.ClaimedPack, worker_id: str) -> bool:
        """Link the artifacts of a build with the same pack key, if one has them."""
        with session_scope(self.factory) as db:
            donor, rows = svc.reusable_artifacts(db, claimed)
        if not donor or not all(self.blobs.exists(digest) for _, digest, _ in rows):
            return False
        info = f"reused the artifacts of build {donor} (same lockfile and packing settings)"
        reused = svc.PackedBlobs(rows, reused=True)
        linked = self._durably(
            claimed.build_id,
            lambda db: svc.record_packed(db, self.blobs, claimed, worker_id, reused, info),
        )
        if linked is None:  # the donor's blobs went meanwhile: pack after all
            return False
        if linked:
            self._log(claimed.build_id, f"[envstore] artifacts: {info}\n")
        return True

    def _supervise(self, claimed: svc.ClaimedPack, work: Path, worker_id: str) -> int | None:
        """Run the pack on this worker's runner; its exit code, or None when it was stopped
        (the job is then queued again or failed here)."""
        session = self._send(work / REQUEST_FILE)
        deadline = time.monotonic() + self.settings.build_timeout
        next_beat = time.monotonic() + self.settings.heartbeat_interval
        reason = ""
        while not session.done.wait(timeout=_TICK_SECONDS):
            self._flush(claimed.build_id, session)
            if time.monotonic() > deadline:
                reason = f"timeout: packing ran longer than {self.settings.build_timeout:g} s"
            elif self.stopping.is_set():
                reason = "interrupted"
            elif time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.settings.heartbeat_interval
                if not self._beat(claimed.build_id, worker_id):
                    reason = "taken"  # the reaper gave the job to another worker
            if reason:
                break
        if reason:
            session.runner.kill()
            session.reader.join(timeout=10)
            self._flush(claimed.build_id, session)
            self.runners.discard(session.runner)
            self._stopped(claimed, worker_id, reason)
            return None
        session.reader.join(timeout=10)
        self._flush(claimed.build_id, session)
        if session.code is not None:
            self.runners.release(session.runner, reusable=session.more)
            return session.code
        code = session.runner.process.wait()
        self.runners.discard(session.runner)
        return code

    def _stopped(self, claimed: svc.ClaimedPack, worker_id: str, reason: str) -> None:
        if reason == "taken":
            return
        if reason == "interrupted":
            self._durably(
                claimed.build_id,
                lambda db: svc.requeue_pack_or_fail(
                    db, claimed.build_id, "server shutting down", 1, counted=False
                ),
            )
            return
        self._fail(claimed.build_id, worker_id, reason)

    def _conclude(self, claimed: svc.ClaimedPack, work: Path, worker_id: str, start: float) -> None:
        result_file, failure_file = work / RESULT_FILE, work / FAILURE_FILE
        if not result_file.exists():
            if failure_file.exists():
                failure = BuildFailureInfo.read(failure_file)
                self._fail(claimed.build_id, worker_id, f"{failure.reason}: {failure.message}")
            else:
                self._fail(claimed.build_id, worker_id, "pack_failed: the pack process died")
            return
        files = PackResult.read(result_file).artifact_files
        # Uploading gigabytes to S3 outlasts the heartbeat timeout: without beats, the reaper
        # would take the job back mid-upload and give it to another worker, again and again.
        with _beating(lambda: self._beat(claimed.build_id, worker_id), self.settings):
            self._store_and_record(claimed, files, worker_id, start)

    def _store_and_record(
        self, claimed: svc.ClaimedPack, files: list[dict[str, Any]], worker_id: str, start: float
    ) -> None:
        try:  # stored before the database links anything (D4); hashed as they were written
            store_artifact_files(self.blobs, files, hashed=True)
        except Exception as exc:
            self._fail(claimed.build_id, worker_id, f"artifact_upload_failed: {exc}")
            return
        # image layers and configs are held too, and reached through the manifest
        packed = svc.PackedBlobs(
            [
                (f["artifact_type"], str(f["sha256"]), int(f["size"]))
                for f in files
                if f.get("artifact_type")
            ],
            [StagedBlob(str(f["sha256"]), path=Path(f["path"])) for f in files],
        )
        info = f"packed in {time.monotonic() - start:.2f}s"
        linked = self._durably(
            claimed.build_id,
            lambda db: svc.record_packed(db, self.blobs, claimed, worker_id, packed, info),
        )
        if linked:
            self._log(
                claimed.build_id,
                f"[envstore] artifacts {', '.join(claimed.kinds)} ready: {info}\n",
            )

    def _fail(self, build_id: int, worker_id: str, info: str) -> None:
        self._log(build_id, f"[envstore] artifacts FAILED (the build stays usable): {info}\n")
        self._durably(build_id, lambda db: svc.fail_pack(db, build_id, worker_id, info))

    def _send(self, request: Path) -> BuildSession:
        runner = self.runners.acquire()
        try:
            return runner.start(request, build=False)
        except OSError:  # it exited between two jobs: one fresh try, whose error is real
            self.runners.discard(runner)
            return self.runners.acquire().start(request, build=False)

    def _beat(self, build_id: int, worker_id: str) -> bool:
        try:
            with session_scope(self.factory) as db:
                return svc.pack_heartbeat(db, build_id, worker_id)
        except Unavailable:
            return True  # a database blip must not stop the job (D1)


@contextmanager
def _beating(beat: Callable[[], object], settings: Settings) -> Iterator[None]:
    """Call ``beat`` every ``heartbeat_interval`` from a thread while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(settings.heartbeat_interval):
            beat()

    thread = threading.Thread(target=loop, name="pack-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()

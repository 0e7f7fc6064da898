"""Run one claimed build attempt in a child process and record its outcome.

The child (``python -m envstore.pipeline.runner``) runs in its own process group so that a
cancel or a timeout kills the whole tree (uv and its children included). Its stdout is the
build log: a reader thread collects lines and the supervising loop appends them to the
database in chunks, refreshes the heartbeat and watches for cancel requests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from envstore.core.builds import BuildStatus
from envstore.db.engine import session_scope
from envstore.errors import NotFound, Unavailable
from envstore.pipeline.contract import (
    FAILURE_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    BuildFailureInfo,
    BuildRequest,
    BuildResult,
)
from envstore.services import worker as svc
from envstore.services.artifacts import ensure_stored, store_artifact_files
from envstore.services.diff import diff_builds, format_diff, previous_build_id
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore
from envstore.storage.layout import StoreLayout

__all__ = ["BuildExecutor"]

T = TypeVar("T")

_FLUSH_SECONDS = 0.25
FILE_ARTIFACTS = ("CONDA_PACK", "DOCKER_MANIFEST")  # written by the build process


@dataclass
class _Outcome:
    returncode: int | None
    canceled: bool = False
    timed_out: bool = False
    interrupted: bool = False  # the server is shutting down and the grace period ran out


class BuildExecutor:
    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], blobs: BlobStore
    ) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self._local = threading.local()
        self._spares: set[subprocess.Popen[bytes]] = set()
        self._spares_lock = threading.Lock()
        self._stop_deadline = float("inf")
        self.factory = factory
        self.blobs = blobs
        self.layout = StoreLayout(settings.envs_dir)

    def run(self, claimed: svc.ClaimedBuild, worker_id: str) -> None:
        """Build ``claimed`` to a terminal state (or back to QUEUED for a retry)."""
        prefix = self.layout.prefix(claimed.namespace, claimed.build_key)
        work = self.settings.work_dir / f"{claimed.id}-{claimed.attempt}"
        shutil.rmtree(prefix, ignore_errors=True)  # a dead earlier attempt may have left it
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        try:
            request = self._request(claimed, prefix, work)
            request.artifacts = [k for k in self.settings.build_artifacts if k in FILE_ARTIFACTS]
            request.oci_prefix = self.settings.oci_prefix
            base_layer = self.settings.oci_base_layer
            request.oci_base_layer = str(base_layer) if base_layer else None
            request.write(work / REQUEST_FILE)
            self._log(
                claimed.id,
                f"[envstore] build {claimed.id} attempt {claimed.attempt} "
                f"({claimed.kind}) on {worker_id}\n",
            )
            outcome = self._supervise(claimed, work, worker_id)
            self._conclude(claimed, outcome, prefix, work)
        except Exception as exc:  # never leave a build BUILDING because of our own bug
            shutil.rmtree(prefix, ignore_errors=True)
            self._finish(claimed.id, BuildStatus.FAILED, f"internal_error: {exc}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            self._prepare_spare()  # after the build, so it never competes with one for the CPU

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
            channel_credentials={
                prefix: credential.as_dict()
                for prefix, credential in self.settings.channel_credentials.items()
            },
            virtual_packages=dict(self.settings.virtual_packages),
            run_link_scripts=self.settings.run_link_scripts,
        )

    def _spawn_runner(self) -> subprocess.Popen[bytes]:
        """A runner in its own session, waiting on stdin for the path of its request."""
        env = os.environ | {
            "PYTHONUNBUFFERED": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "NO_COLOR": "1",
        }
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        child = subprocess.Popen(
            [sys.executable, "-m", "envstore.pipeline.runner", "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            start_new_session=True,
            env=env,
            cwd=self.settings.work_dir,
        )
        with self._spares_lock:
            self._spares.add(child)
        return child

    def _runner(self) -> subprocess.Popen[bytes]:
        """This worker thread's spare runner (started during its previous build), or a new one.

        Interpreter start-up and imports cost ~0.1 s, a fifth of a small build: paying it ahead
        of time keeps envstore close to what uv alone takes.
        """
        spare: subprocess.Popen[bytes] | None = getattr(self._local, "spare", None)
        self._local.spare = None
        if spare is None or spare.poll() is not None:
            spare = self._spawn_runner()
        with self._spares_lock:
            self._spares.discard(spare)
        return spare

    def _prepare_spare(self) -> None:
        if not self.stopping.is_set():
            self._local.spare = self._spawn_runner()

    def close_spares(self) -> None:
        """Let unused spare runners exit (they read an empty request path)."""
        with self._spares_lock:
            spares, self._spares = list(self._spares), set()
        for spare in spares:
            with contextlib.suppress(OSError):
                assert spare.stdin is not None
                spare.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                spare.wait(timeout=5)

    def _supervise(self, claimed: svc.ClaimedBuild, work: Path, worker_id: str) -> _Outcome:
        child = self._runner()
        assert child.stdin is not None
        child.stdin.write(f"{work / REQUEST_FILE}\n".encode())
        child.stdin.close()
        lines: list[str] = []
        lock = threading.Lock()
        reader = threading.Thread(target=_read_lines, args=(child, lines, lock), daemon=True)
        reader.start()
        deadline = time.monotonic() + self.settings.build_timeout
        next_beat = 0.0
        outcome = _Outcome(None)
        while True:
            finished = child.poll() is not None
            if not finished and time.monotonic() > deadline:
                outcome.timed_out = True
            elif not finished and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.settings.heartbeat_interval
                outcome.canceled = self._beat(claimed.id, worker_id)
            if not finished and self._grace_over():
                outcome.interrupted = True
            if outcome.timed_out or outcome.canceled or outcome.interrupted:
                _kill_group(child)
                finished = True
            if finished:
                reader.join(timeout=10)
            self._flush(claimed.id, lines, lock)
            if finished:
                outcome.returncode = child.wait()
                return outcome
            # Wakes as soon as the child exits, so a quick build is not charged a full tick.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=_FLUSH_SECONDS)

    def stop(self, grace: float) -> None:
        """Ask running builds to finish within ``grace`` seconds; after that they are killed
        and queued again (W3), without counting the interrupted attempt."""
        self._stop_deadline = time.monotonic() + grace
        self.stopping.set()

    def _grace_over(self) -> bool:
        return self.stopping.is_set() and time.monotonic() > self._stop_deadline

    def _beat(self, build_id: int, worker_id: str) -> bool:
        try:
            with session_scope(self.factory) as db:
                return svc.heartbeat(db, build_id, worker_id)
        except Unavailable:
            return False  # a database blip must not fail the build (D1)

    def _flush(self, build_id: int, lines: list[str], lock: threading.Lock) -> None:
        with lock:
            text = "".join(lines)
            lines.clear()
        if text and not self._log(build_id, text):
            with lock:  # keep the lines for the next flush: the log loses nothing to a blip
                lines.insert(0, text)

    def _log(self, build_id: int, text: str) -> bool:
        """Append to the build log; False (nothing written) while the database is away."""
        try:
            with session_scope(self.factory) as db:
                svc.append_log(db, build_id, text, self.settings.max_log_bytes)
        except Unavailable:
            return False
        return True

    def _durably(self, action: Callable[[Session], T]) -> T:
        """Run ``action`` in a transaction, retrying while the database is unavailable (D1):
        a build's outcome is never lost to a database blip, for up to ``db_retry_seconds``."""
        deadline = time.monotonic() + self.settings.db_retry_seconds
        pause = 0.25
        while True:
            try:
                with session_scope(self.factory) as db:
                    return action(db)
            except Unavailable:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _conclude(
        self, claimed: svc.ClaimedBuild, outcome: _Outcome, prefix: Path, work: Path
    ) -> None:
        result_file, failure_file = work / RESULT_FILE, work / FAILURE_FILE
        if outcome.interrupted:
            shutil.rmtree(prefix, ignore_errors=True)
            self._log(
                claimed.id, "[envstore] server shutting down: build interrupted, queued again\n"
            )
            self._durably(lambda db: svc.requeue_interrupted(db, claimed.id))
        elif outcome.canceled:
            shutil.rmtree(prefix, ignore_errors=True)
            self._log(claimed.id, "[envstore] build canceled; process tree killed\n")
            self._finish(claimed.id, BuildStatus.CANCELED, "canceled: by request")
        elif outcome.timed_out:
            shutil.rmtree(prefix, ignore_errors=True)
            self._finish(
                claimed.id,
                BuildStatus.FAILED,
                f"timeout: the build ran longer than {self.settings.build_timeout:g} s "
                "(build_timeout)",
            )
        elif outcome.returncode == 0 and result_file.exists():
            self._publish(claimed, BuildResult.read(result_file), prefix)
        elif failure_file.exists():
            shutil.rmtree(prefix, ignore_errors=True)
            failure = BuildFailureInfo.read(failure_file)
            info = f"{failure.reason}: {failure.message}"
            if failure.retryable:
                self._retry(claimed.id, info)
            else:
                self._finish(claimed.id, BuildStatus.FAILED, info)
        else:
            shutil.rmtree(prefix, ignore_errors=True)
            code = outcome.returncode or 0
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self._retry(claimed.id, f"worker_lost: the build process {how}")

    def _publish(self, claimed: svc.ClaimedBuild, result: BuildResult, prefix: Path) -> None:
        key = str(prefix.relative_to(self.settings.store_dir))
        start = time.monotonic()
        try:  # upload and verify before the database links anything (D4, no half-written blob)
            stored = store_artifact_files(self.blobs, result.artifact_files)
        except (Unavailable, NotFound) as exc:
            shutil.rmtree(prefix, ignore_errors=True)
            self._finish(claimed.id, BuildStatus.FAILED, f"artifact_upload_failed: {exc}")
            return
        self._log(
            claimed.id,
            f"[envstore] stored {len(result.artifact_files)} artifact file(s) "
            f"in {time.monotonic() - start:.2f}s\n",
        )
        rows = [(a.artifact_type, a.digest, a.size) for a in stored]
        published, switched = self._durably(
            lambda db: svc.publish(db, self.blobs, claimed, result, key, rows)
        )
        if not published:
            shutil.rmtree(prefix, ignore_errors=True)
            return
        # a GC that listed blobs before this commit may have swept them meanwhile (D6)
        ensure_stored(self.blobs, result.artifact_files, [result.lockfile, result.pinned_yaml])
        self._log_diff(claimed.id)
        if switched:
            self.layout.publish(claimed.namespace, claimed.environment, claimed.build_key)
        self._log(
            claimed.id,
            f"[envstore] build {claimed.id} COMPLETED: {len(result.packages)} packages, "
            f"{result.size} bytes at {prefix}\n",
        )

    def _log_diff(self, build_id: int) -> None:
        """Write the package diff against the environment's previous build into the log."""
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
        self._log(build_id, "[envstore] " + text)

    def _retry(self, build_id: int, reason: str) -> None:
        self._log(build_id, f"[envstore] attempt failed: {reason}\n")
        self._durably(
            lambda db: svc.requeue_or_fail(db, build_id, reason, self.settings.max_build_attempts)
        )

    def _finish(self, build_id: int, status: BuildStatus, info: str) -> None:
        self._log(build_id, f"[envstore] build {status.value}: {info}\n")
        self._durably(lambda db: svc.finish_failed(db, build_id, status, info))


def _read_lines(child: subprocess.Popen[bytes], lines: list[str], lock: threading.Lock) -> None:
    assert child.stdout is not None
    for raw in iter(child.stdout.readline, b""):
        with lock:
            lines.append(raw.decode(errors="replace"))


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a short grace."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # grandchildren that outlived the leader
        return

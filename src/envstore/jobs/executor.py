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
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from envstore.core.builds import BuildStatus
from envstore.db.engine import session_scope
from envstore.errors import Unavailable
from envstore.pipeline.contract import (
    FAILURE_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    BuildFailureInfo,
    BuildRequest,
    BuildResult,
)
from envstore.services import worker as svc
from envstore.settings import Settings
from envstore.storage.layout import StoreLayout
from envstore.storage.local import BlobStore

__all__ = ["BuildExecutor"]

_FLUSH_SECONDS = 0.25


@dataclass
class _Outcome:
    returncode: int | None
    canceled: bool = False
    timed_out: bool = False


class BuildExecutor:
    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], blobs: BlobStore
    ) -> None:
        self.settings = settings
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
            self._request(claimed, prefix, work).write(work / REQUEST_FILE)
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
        )

    def _supervise(self, claimed: svc.ClaimedBuild, work: Path, worker_id: str) -> _Outcome:
        env = os.environ | {
            "PYTHONUNBUFFERED": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "NO_COLOR": "1",
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "envstore.pipeline.runner", str(work / REQUEST_FILE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=work,
        )
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
            if outcome.timed_out or outcome.canceled:
                _kill_group(child)
                finished = True
            if finished:
                reader.join(timeout=10)
            self._flush(claimed.id, lines, lock)
            if finished:
                outcome.returncode = child.wait()
                return outcome
            time.sleep(_FLUSH_SECONDS)

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
        if text:
            self._log(build_id, text)

    def _log(self, build_id: int, text: str) -> None:
        with contextlib.suppress(Unavailable), session_scope(self.factory) as db:
            svc.append_log(db, build_id, text, self.settings.max_log_bytes)

    def _conclude(
        self, claimed: svc.ClaimedBuild, outcome: _Outcome, prefix: Path, work: Path
    ) -> None:
        result_file, failure_file = work / RESULT_FILE, work / FAILURE_FILE
        if outcome.canceled:
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
        with session_scope(self.factory) as db:
            published, switched = svc.publish(db, self.blobs, claimed, result, key)
        if not published:
            shutil.rmtree(prefix, ignore_errors=True)
            return
        if switched:
            self.layout.publish(claimed.namespace, claimed.environment, claimed.build_key)
        self._log(
            claimed.id,
            f"[envstore] build {claimed.id} COMPLETED: {len(result.packages)} packages, "
            f"{result.size} bytes at {prefix}\n",
        )

    def _retry(self, build_id: int, reason: str) -> None:
        self._log(build_id, f"[envstore] attempt failed: {reason}\n")
        with session_scope(self.factory) as db:
            svc.requeue_or_fail(db, build_id, reason, self.settings.max_build_attempts)

    def _finish(self, build_id: int, status: BuildStatus, info: str) -> None:
        self._log(build_id, f"[envstore] build {status.value}: {info}\n")
        with session_scope(self.factory) as db:
            svc.finish_failed(db, build_id, status, info)


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

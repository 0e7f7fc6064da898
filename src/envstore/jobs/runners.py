"""The build processes of the workers: one warm runner per worker thread, reused across builds.

A runner (``python -m envstore.pipeline.runner -``) starts, imports the backends (py-rattler
alone takes ~0.09 s) and then serves the builds its worker sends, one at a time. Starting a
process per build cost a small conda build about half of its time; a runner that stays makes
the second build as fast as the tools themselves allow.

A runner is replaced when it leaves on its own (after an ``internal_error`` or a SIGTERM), when
the worker kills it (cancel, timeout, shutdown), after ``runner_max_builds`` builds, and when it
has been idle ``runner_idle_seconds``, so that an idle server holds no build process at all
(none is started before a worker's first build either).
Each runner runs in its own session, so that killing it kills every tool a build started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from envstore.pipeline.contract import END_MARK, parse_end
from envstore.settings import Settings

__all__ = ["BuildSession", "Runner", "RunnerPool"]


class BuildSession:
    """One build on a runner: its log lines as they come, and how it ended."""

    def __init__(self, runner: Runner, nonce: str) -> None:
        self.runner = runner
        self.nonce = nonce
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()  # the end line came, or the runner's output closed
        self.code: int | None = None  # from the end line; None when the runner died instead
        self.more = False  # the runner takes another build
        self.reader = threading.Thread(target=self._read, name="runner-log", daemon=True)
        self.reader.start()

    def take_lines(self) -> str:
        with self.lock:
            text = "".join(self.lines)
            self.lines.clear()
        return text

    def put_back(self, text: str) -> None:
        with self.lock:
            self.lines.insert(0, text)

    def _read(self) -> None:
        stdout = self.runner.process.stdout
        assert stdout is not None
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode(errors="replace")
                if line.startswith(END_MARK):
                    ended = parse_end(line, self.nonce)
                    if ended is not None:
                        self.code, self.more = ended
                        return
                    continue  # a forged or stale end line is neither obeyed nor logged
                with self.lock:
                    self.lines.append(line)
        finally:
            self.done.set()


class Runner:
    """One serving runner process."""

    def __init__(self, cwd: Path) -> None:
        env = os.environ | {
            "PYTHONUNBUFFERED": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "NO_COLOR": "1",
        }
        cwd.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "envstore.pipeline.runner", "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
        self.builds = 0
        self.idle_since = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, request: Path, *, build: bool = True) -> BuildSession:
        """Send one build (or, ``build=False``, a pack job, which ``builds`` and so
        ``runner_max_builds`` do not count); raises OSError when the runner is gone."""
        nonce = secrets.token_hex(16)
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(f"{nonce} {request}\n".encode())
        stdin.flush()
        self.builds += int(build)
        return BuildSession(self, nonce)

    def retire(self) -> None:
        """Let the runner exit (it reads the end of its requests), or kill it if it won't."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGTERM the runner's process group, then SIGKILL what is left after a short grace."""
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # grandchildren that outlived it
            return


class RunnerPool:
    """Each worker thread's runner, kept warm between builds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self._local = threading.local()
        self._all: set[Runner] = set()
        self._lock = threading.Lock()

    @property
    def reuse(self) -> bool:
        return self.settings.runner_idle_seconds > 0

    def prepare(self) -> None:
        """Start this thread's runner ahead of its next build (its imports take a while)."""
        if self.reuse and not self.stopping.is_set() and self._mine() is None:
            self._local.runner = self._spawn()

    def acquire(self) -> Runner:
        """This thread's live runner, or a new one."""
        runner = self._mine()
        self._local.runner = None
        if runner is not None and runner.alive():
            return runner
        if runner is not None:
            self._forget(runner)
        return self._spawn()

    def release(self, runner: Runner, reusable: bool) -> None:
        """Keep ``runner`` for this thread's next build, or replace it."""
        keep = reusable and self.reuse and not self.stopping.is_set()
        if keep and runner.alive() and runner.builds < self.settings.runner_max_builds:
            runner.idle_since = time.monotonic()
            self._local.runner = runner
            return
        self._end(runner)
        self.prepare()

    def discard(self, runner: Runner) -> None:
        """``runner`` was killed or died: forget it (a new one is started when needed)."""
        self._end(runner)

    def retire_idle(self) -> None:
        """Let this thread's runner go when it has waited ``runner_idle_seconds`` for a build."""
        runner = self._mine()
        if runner is None:
            return
        idle = time.monotonic() - runner.idle_since
        if not runner.alive() or idle >= self.settings.runner_idle_seconds:
            self._local.runner = None
            self._end(runner)

    def close_all(self) -> None:
        """Let every runner exit (at shutdown, when no build runs any more)."""
        self.stopping.set()
        with self._lock:
            runners, self._all = list(self._all), set()
        for runner in runners:
            runner.retire()

    def _mine(self) -> Runner | None:
        runner: Runner | None = getattr(self._local, "runner", None)
        return runner

    def _spawn(self) -> Runner:
        runner = Runner(self.settings.work_dir)
        with self._lock:
            self._all.add(runner)
        return runner

    def _end(self, runner: Runner) -> None:
        self._forget(runner)
        if runner.alive():
            runner.retire()

    def _forget(self, runner: Runner) -> None:
        with self._lock:
            self._all.discard(runner)

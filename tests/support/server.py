"""Start a real ``envstore serve`` subprocess on a free port, for tests that need the whole server
(its worker pool, its restart behaviour) rather than an in-process app."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ENVSTORE = str(Path(sys.executable).parent / "envstore")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``envstore serve`` in its own session, so a test can kill its whole process tree."""

    def __init__(
        self,
        store: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # These servers test workers and storage, not access control: anonymous callers are
        # administrators unless ``env`` says otherwise (tests/acceptance closes it again).
        open_access = {"ENVSTORE_ANONYMOUS_ROLE_BINDINGS": '{"*/*": ["admin"]}'}
        self.env = {**os.environ, "ENVSTORE_STORE_DIR": str(store), **open_access, **(env or {})}
        self.log = store.parent / f"server-{self.port}.log"
        self.args = args  # e.g. ("--no-workers",)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.store.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [ENVSTORE, "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envstore serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/livez", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"envstore serve did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self) -> None:
        """SIGKILL the server's whole process group (its worker threads die with it)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", timeout=30, **kwargs)

    def submit(self, text: str, name: str = "env", **extra: Any) -> int:
        response = self.api(
            "POST",
            "/specification/",
            json={"specification": text, "environment_name": name, **extra},
        )
        assert response.status_code == 200, response.text
        return int(response.json()["data"]["build_id"])

    def build(self, build_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.api("GET", f"/build/{build_id}/").json()["data"]
        return data

    def wait_for(self, build_id: int, statuses: set[str], timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build = self.build(build_id)
            if build["status"] in statuses:
                return build
            time.sleep(0.1)
        raise AssertionError(
            f"build {build_id} still {self.build(build_id)['status']} after {timeout}s\n"
            + self.diagnosis(build_id)
        )

    def diagnosis(self, build_id: int) -> str:
        """What a test that timed out on a build prints: the end of its log and where every
        thread of the server is (py-spy, a dev dependency), to find a hang after the fact."""
        parts = []
        with contextlib.suppress(Exception):
            log = self.api("GET", f"/build/{build_id}/logs/").text
            parts.append(f"--- end of the build log ---\n{log[-3000:]}")
        py_spy = Path(sys.executable).parent / "py-spy"
        if self.process is not None and py_spy.exists():
            with contextlib.suppress(Exception):
                dump = subprocess.run(
                    [str(py_spy), "dump", "--pid", str(self.process.pid)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                parts.append(f"--- server threads ---\n{dump.stdout[-6000:]}{dump.stderr[-500:]}")
        return "\n".join(parts)

    def wait_for_artifacts(self, build_id: int, timeout: float = 120.0) -> dict[str, Any]:
        """The build once its pack job (archive, image) has ended: they are made after
        COMPLETED. Fails if the pack job failed or did not end in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build = self.build(build_id)
            if build.get("artifacts_status") in ("COMPLETED", "FAILED", None):
                assert build.get("artifacts_status") != "FAILED", build["artifacts_status_info"]
                return build
            time.sleep(0.1)
        raise AssertionError(f"artifacts of build {build_id} not packed after {timeout}s")


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line or working directory contains ``text``
    (a build's runner works in its build's work directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            with contextlib.suppress(OSError):
                cmdline += " " + os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found

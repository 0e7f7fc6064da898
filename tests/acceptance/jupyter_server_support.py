"""A real ``jupyter server`` subprocess, driven through its REST API and kernel websocket.

The envstore extension is enabled by the ``jupyter_server_config.d/envstore.json`` file the
envstore install put into this environment's ``etc/jupyter``, as for a user.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import websocket

from tests.support.server import free_port

JUPYTER_SERVER = str(Path(sys.executable).parent / "jupyter-server")


class JupyterServer:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "jupyter-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"token {self.token}"}, timeout=60
        )

    def __enter__(self) -> JupyterServer:
        command = [
            JUPYTER_SERVER,
            "--no-browser",
            "--allow-root",  # CI runs as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, env=self.env, stdout=sink, stderr=sink)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.http.get("/api/status").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"jupyter server did not start:\n{self.log.read_text()}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def kernelspecs(self) -> dict[str, Any]:
        answer = self.http.get("/api/kernelspecs")
        assert answer.status_code == 200, answer.text
        specs: dict[str, Any] = answer.json()["kernelspecs"]
        return specs

    def wait_for_kernelspec(self, name: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            specs = self.kernelspecs()
            if name in specs:
                return specs
            time.sleep(0.3)
        raise AssertionError(f"{name} not listed: {list(specs)}\n{self.log.read_text()}")

    def start_kernel(self, name: str) -> str:
        answer = self.http.post("/api/kernels", json={"name": name})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def run_code(self, kernel_id: str, code: str, timeout: float = 120) -> str:
        """Execute ``code`` over the kernel's websocket; return what it printed."""
        socket = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels",
            header=[f"Authorization: token {self.token}"],
            timeout=timeout,
        )
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "test",
                "session": uuid.uuid4().hex,
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
            },
            "channel": "shell",
        }
        printed: list[str] = []
        replied = idle = False
        try:
            socket.send(json.dumps(request))
            # The reply comes on the shell channel, the output on iopub: they are not ordered
            # with each other. The output is complete once iopub says the kernel is idle again.
            while not (replied and idle):
                message = json.loads(socket.recv())
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["header"]["msg_type"]
                if kind == "stream":
                    printed.append(message["content"]["text"])
                elif kind == "execute_reply":
                    assert message["content"]["status"] == "ok", message["content"]
                    replied = True
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    idle = True
            return "".join(printed).strip()
        finally:
            socket.close()

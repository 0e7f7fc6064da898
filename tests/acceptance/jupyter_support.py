"""Helpers of the Jupyter acceptance tests: an envstore with users, and kernels run for real.

Kernels are started by ``jupyter_client`` from the kernelspecs ``envstore kernels sync``
wrote, exactly as JupyterLab or nbconvert start them; code runs over the real ZMQ channels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from tests.support.server import ServerProcess

ENVSTORE = str(Path(sys.executable).parent / "envstore")
PREFIX_PROBE = "import sys; print(sys.prefix)"


@dataclass
class Person:
    """One envstore user: their token, and an ``envstore`` CLI that runs as them."""

    name: str
    url: str
    token: str
    home: Path

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVSTORE_", "JUPYTER"))}
        env |= {
            "ENVSTORE_URL": self.url,
            "ENVSTORE_TOKEN": self.token,
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "JUPYTER_DATA_DIR": str(self.home / "jupyter-data"),
            "JUPYTER_CONFIG_DIR": str(self.home / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "jupyter-runtime"),
            "COLUMNS": "200",
        }
        return env | extra

    def cli(
        self, *args: str, code: int | None = 0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [ENVSTORE, *args],
            env=dict(env) if env is not None else self.environ(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if code is not None:
            assert result.returncode == code, (
                f"{self.name}: envstore {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        assert "Traceback" not in result.stderr
        return result

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )


def add_person(server: ServerProcess, name: str, home: Path, *, admin: bool = False) -> Person:
    """Create the account on the server host, sign in, and keep an API token."""
    password = f"pw-{name}-long-enough"
    env = {**os.environ, "ENVSTORE_STORE_DIR": str(server.store)}
    command = [ENVSTORE, "user", "add", name, "--password-stdin", *(["--admin"] if admin else [])]
    subprocess.run(command, env=env, input=password + "\n", text=True, check=True, timeout=60)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/login/", json={"username": name, "password": password}).is_success
        token = http.post("/api/v1/token/", json={"name": "tests"}).json()["data"]["token"]
    return Person(name, server.url, token, home)


def submit(person: Person, namespace: str, name: str, spec: str) -> dict[str, Any]:
    """Submit a spec as ``person`` and wait for its build to complete."""
    body = {"specification": spec, "namespace": namespace, "environment_name": name}
    with person.api() as api:
        answer = api.post("/specification/", json=body)
        assert answer.status_code == 200, answer.text
        build_id = answer.json()["data"]["build_id"]
        while True:
            build: dict[str, Any] = api.get(f"/build/{build_id}/", params={"wait": 20}).json()[
                "data"
            ]
            if build["status"] not in ("QUEUED", "BUILDING"):
                break
    assert build["status"] == "COMPLETED", api_log(person, build_id)
    return build


def api_log(person: Person, build_id: int) -> str:
    with person.api() as api:
        return api.get(f"/build/{build_id}/logs/").text


def kernel_names(directory: Path) -> dict[str, str]:
    """Kernel name → display name, as Jupyter itself reads ``directory``."""
    manager = KernelSpecManager(kernel_dirs=[str(directory)], ensure_native_kernel=False)
    return {name: spec["spec"]["display_name"] for name, spec in manager.get_all_specs().items()}


@contextmanager
def running_kernel(directory: Path, name: str, env: Mapping[str, str]) -> Iterator[Any]:
    """Start kernel ``name`` from ``directory`` with jupyter_client; yield a blocking client."""
    specs = KernelSpecManager(kernel_dirs=[str(directory)], ensure_native_kernel=False)
    manager = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    manager.start_kernel(env=dict(env))
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=120)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run_code(client: Any, code: str) -> str:
    """Execute ``code`` in the kernel; return what it printed (fails on an error reply)."""
    printed: list[str] = []

    def hook(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    reply = client.execute_interactive(code, timeout=60, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(printed).strip()

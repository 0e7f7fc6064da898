"""The distributed mode on one machine: ``envstore serve --no-workers`` API processes and
``envstore worker`` Celery workers on a throw-away PostgreSQL database and the local Redis.

Each cluster has its own queue prefix, so clusters of parallel tests (and other users of the
Redis server) never see each other's messages. PostgreSQL and Redis can be reached through
:class:`TcpProxy` instances the test controls, to cut them (D1, D8).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from envstore.db.engine import make_engine, upgrade
from tests.support.server import ENVSTORE, ServerProcess

REDIS_URL = os.environ.get("ENVSTORE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def fresh_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()


class WorkerProcess:
    """One ``envstore worker`` in its own session (SIGKILL of the group kills all of it)."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int, queues: str) -> None:
        self.env = env
        self.log = log
        self.concurrency = concurrency
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    ENVSTORE,
                    "worker",
                    f"--concurrency={self.concurrency}",
                    f"--queues={self.queues}",
                ],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while b"ready." not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"envstore worker did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self, timeout: float = 60) -> None:
        """A warm shutdown (drain), as systemd or docker stop do."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


class Cluster:
    def __init__(
        self,
        root: Path,
        database_url: str,
        broker_url: str = REDIS_URL,
        **settings: str,
    ) -> None:
        self.root = root
        self.store = root / "store"  # the shared store path of every host
        self.store.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "ENVSTORE_STORE_DIR": str(self.store),
            "ENVSTORE_DATABASE_URL": database_url,
            "ENVSTORE_BROKER_URL": broker_url,
            "ENVSTORE_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:12]}",
            "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": '{"*/*": ["admin"]}',
            "ENVSTORE_SECRET": "x" * 40,
            "ENVSTORE_REAP_INTERVAL": "1",
            "ENVSTORE_HEARTBEAT_INTERVAL": "0.5",
            "ENVSTORE_HEARTBEAT_TIMEOUT": "6",
            "ENVSTORE_RETRY_BACKOFF": "1",
            "ENVSTORE_BUILD_ARTIFACTS": '["LOCKFILE", "YAML", "LOGS"]',
            **settings,
        }
        self.apis: list[ServerProcess] = []
        self.workers: list[WorkerProcess] = []

    def api(self) -> ServerProcess:
        server = ServerProcess(self.store, env=self.env, args=("--no-workers",))
        self.apis.append(server.start())
        return server

    def worker(
        self, concurrency: int = 2, queues: str = "builds,artifacts,gc", **env: str
    ) -> WorkerProcess:
        log = self.root / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess({**self.env, **env}, log, concurrency, queues).start()
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.kill9()
        for server in self.apis:
            server.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.root.glob("*.log"))

"""Server CPU per read and idle memory of ``envstore serve`` (embedded default, SQLite).

Populates a store with namespaces x environments x builds (through the same worker services
the real workers use, without installing anything), starts the server, then for each route
sends N sequential requests and reads the server's CPU time (utime + stime from /proc) before
and after: CPU milliseconds per request, independent of client overhead. Requests are anonymous
(anonymous callers are administrators here), but for one route read again with an API token.
Also prints the server's resident memory after start-up and after the reads. Goals: about 1 ms
of server CPU per read; under 150 MB idle.

    python benchmarks/api_reads.py [--namespaces 20] [--envs 10] [--builds 3] [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.server import ServerProcess

from envstore.core.specs import SpecLimits
from envstore.db.engine import make_engine, session_scope, upgrade
from envstore.pipeline.contract import BuildResult, PackageInfo
from envstore.services import worker
from envstore.services.submit import Submission, submit
from envstore.storage.local import LocalBlobStore

TICKS = os.sysconf("SC_CLK_TCK")


def populate(store: Path, namespaces: int, envs: int, builds: int) -> None:
    from sqlalchemy.orm import sessionmaker

    from envstore.auth.principal import Principal

    engine = make_engine(f"sqlite:///{store / 'state' / 'envstore.db'}")
    upgrade(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    blobs = LocalBlobStore(store / "blobs" / "sha256")
    who = Principal(name="bench", primary_namespace="default")
    for n in range(namespaces):
        for e in range(envs):
            for b in range(builds):
                with session_scope(factory) as db:
                    sub = Submission(f"six==1.{b}.0\npkg{e}==1.0\n", f"env{e}", f"ns{n}")
                    build = submit(db, who, sub, SpecLimits()).build
                    claimed = worker.claim(db, build.id, "bench:0:0")
                    assert claimed is not None
                    packages = [
                        PackageInfo(
                            f"dep{i}",
                            "1.0",
                            "pip",
                            "https://pypi.org/simple",
                            f"https://x/dep{i}.whl",
                            f"{i:064x}",
                            i == 0,
                        )
                        for i in range(20)
                    ]
                    result = BuildResult(
                        "version: 1\n", "dependencies: []\n", packages, 1000, "3.11.7"
                    )
                    worker.publish(db, blobs, claimed, result, "envs/x")
    engine.dispose()


def make_token(store: Path) -> str:
    """An administrator's API token: what the CLI and other clients send with every request."""
    from sqlalchemy.orm import sessionmaker

    from envstore.services.access import principal_for_user
    from envstore.services.tokens import TokenRequest, create_token
    from envstore.services.users import add_user
    from envstore.settings import load_settings

    settings = load_settings(store_dir=store)
    engine = make_engine(settings.resolved_database_url)
    with session_scope(sessionmaker(engine, expire_on_commit=False)) as db:
        user = add_user(db, "bench", "bench-password-1", admin=True)
        who = principal_for_user(db, settings, user)
        secret, _ = create_token(db, settings, who, TokenRequest("bench"))
    engine.dispose()
    return secret


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--envs", type=int, default=10)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="envstore-bench-"))
    try:
        store = root / "store"
        started = time.perf_counter()
        populate(store, args.namespaces, args.envs, args.builds)
        total = args.namespaces * args.envs * args.builds
        print(f"populated {total} builds in {time.perf_counter() - started:.1f} s")
        bearer = {"Authorization": f"Bearer {make_token(store)}"}
        server = ServerProcess(store, env={"ENVSTORE_WORKERS": "2"}).start()
        assert server.process is not None
        pid = server.process.pid
        time.sleep(1.0)
        print(f"idle RSS after start: {rss_mb(pid):.0f} MB")
        routes: dict[str, tuple[str, dict[str, str]]] = {
            "GET /environment/ (page of 100)": ("/api/v1/environment/", {}),
            "GET /build/ (page of 100)": ("/api/v1/build/", {}),
            "GET /environment/ns3/env4/": ("/api/v1/environment/ns3/env4/", {}),
            "GET /build/{id}/": (f"/api/v1/build/{total // 2}/", {}),
            "GET /build/{id}/ with a token": (f"/api/v1/build/{total // 2}/", bearer),
            "GET /build/{id}/packages/": (f"/api/v1/build/{total // 2}/packages/", {}),
        }
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for label, (path, headers) in routes.items():
                for _ in range(20):
                    assert client.get(path, headers=headers).status_code == 200
                before = cpu_seconds(pid)
                wall = time.perf_counter()
                for _ in range(args.requests):
                    client.get(path, headers=headers)
                wall = time.perf_counter() - wall
                per = (cpu_seconds(pid) - before) / args.requests * 1000
                print(
                    f"{label:36s} server CPU {per:5.2f} ms/request, wall {wall / args.requests * 1000:5.2f} ms"
                )
        print(f"RSS after the reads: {rss_mb(pid):.0f} MB")
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

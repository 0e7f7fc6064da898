"""L1 and L4 of RELIABILITY.md against the distributed mode: API processes on PostgreSQL with
Celery workers building at the same time, loaded from a separate process on loopback.

Sets up a PostgreSQL database of namespaces x environments x builds: the first namespace
through the worker services (submit, claim, publish; nothing installed), the others as SQL
copies of its rows. Starts ``--api`` ``envstore serve --no-workers`` processes and one
``envstore worker`` that builds a small real PyPI build (a loopback index) every
``--build-every`` seconds, then runs the load process: ``--clients`` concurrent clients of
mixed reads spread over the API processes (L1) while a few clients submit specs (L4). Prints
p50/p95/p99 and errors per route, the request rate and where the CPU went (API processes,
worker, PostgreSQL, load generator); run it with ``--api 1`` and ``--api 2`` to see how
throughput grows. ``--keep NAME`` keeps the database for the next run.

    python benchmarks/api_load.py [--api 2] [--clients 200] [--seconds 20] [--keep l1]
                                  [--namespaces 200] [--envs 50] [--builds 5]
                                  [--build-every 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import PG_ADMIN_URL
from tests.support.cluster import Cluster, fresh_schema
from tests.support.local_index import local_index

from envstore.core.specs import SpecLimits
from envstore.db.engine import make_engine, session_scope
from envstore.pipeline.contract import BuildResult, PackageInfo
from envstore.services import worker
from envstore.services.submit import Submission, submit
from envstore.storage.local import LocalBlobStore

READS = ("env list", "env get", "build get", "build list (ns)", "build packages")


def populate(url: str, store: Path, namespaces: int, envs: int, builds: int) -> int:
    """``ns0`` through the services (submit, claim, publish: the rows a real build leaves), then
    ``ns1`` ... as copies of its rows made in SQL (:func:`replicate`): the 50,000-build set took
    12 minutes through the services alone."""
    first = _populate_services(url, store, 1, envs, builds)
    if namespaces > 1:
        replicate(url, namespaces)
    return first * namespaces


def _populate_services(url: str, store: Path, namespaces: int, envs: int, builds: int) -> int:
    from sqlalchemy.orm import sessionmaker

    from envstore.auth.principal import Principal

    engine = make_engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    blobs = LocalBlobStore(store / "blobs" / "sha256")
    who = Principal(name="bench", primary_namespace="default")
    packages = [
        PackageInfo(
            f"dep{i}",
            "1.0",
            "pip",
            "https://pypi.org/simple",
            f"https://x/{i}.whl",
            f"{i:064x}",
            i == 0,
        )
        for i in range(20)
    ]
    result = BuildResult("version: 1\n", "dependencies: []\n", packages, 1000, "3.11.7")
    total = 0
    for n in range(namespaces):
        with session_scope(factory) as db:  # one transaction per namespace
            for e in range(envs):
                for b in range(builds):
                    sub = Submission(f"six==1.{b}.0\npkg{e}==1.0\n", f"env{e}", f"ns{n}")
                    build = submit(db, who, sub, SpecLimits()).build
                    claimed = worker.claim(db, build.id, "bench:0:0")
                    assert claimed is not None
                    worker.publish(db, blobs, claimed, result, "envs/x")
                    total += 1
    engine.dispose()
    return total


# ns0's rows are copied once per namespace k (1 .. n-1), every id moved by k times the largest
# id ns0 used in its table; columns not named here are copied as they are. Build keys end in
# "<id>-<environment>" after a 32-character "<hash>-<timestamp>-" head.
_COPIES: tuple[tuple[str, dict[str, str], str], ...] = (
    ("namespace", {"id": "t.id + k * :ns", "name": "'ns' || k"}, ""),
    (
        "environment",
        {
            "id": "t.id + k * :env",
            "namespace_id": "namespace_id + k * :ns",
            "current_build_id": "NULL",
        },
        "",
    ),
    (
        "build",
        {
            "id": "t.id + k * :build",
            "environment_id": "environment_id + k * :env",
            "build_key": "left(build_key, 32) || (t.id + k * :build) || '-' || e.name",
        },
        "JOIN environment e ON e.id = t.environment_id",
    ),
    (
        "build_artifact",
        {
            "id": "t.id + k * :artifact",
            "build_id": "build_id + k * :build",
            "key": "CASE WHEN artifact_type = 'LOGS' THEN 'log:' || (build_id + k * :build)"
            " ELSE key END",
        },
        "",
    ),
    ("build_package", {"build_id": "build_id + k * :build"}, ""),
    (
        "current_build_switch",
        {
            "id": "t.id + k * :switch",
            "environment_id": "environment_id + k * :env",
            "from_build_id": "from_build_id + k * :build",
            "to_build_id": "to_build_id + k * :build",
        },
        "",
    ),
    ("audit_event", {"id": "t.id + k * :audit", "namespace": "'ns' || k"}, ""),
)
_CURRENT = (
    "UPDATE environment c SET current_build_id = o.current_build_id + (c.namespace_id - 1)"
    " / :ns * :build FROM environment o WHERE o.namespace_id = 1 AND c.namespace_id > 1"
    " AND c.id = o.id + (c.namespace_id - 1) / :ns * :env"
)
_TOPS = {
    "ns": "namespace",
    "env": "environment",
    "build": "build",
    "artifact": "build_artifact",
    "switch": "current_build_switch",
    "audit": "audit_event",
}


def replicate(url: str, namespaces: int) -> None:
    """Copy the one populated namespace ``ns0`` into ``ns1`` ... ``ns<namespaces-1>``."""
    engine = create_engine(url)
    with engine.begin() as conn:
        only = conn.execute(text("SELECT count(*) FROM namespace")).scalar_one()
        assert only == 1, f"replicate copies a database of one namespace, not {only}"
        top = {
            key: conn.execute(text(f"SELECT max(id) FROM {table}")).scalar_one()
            for key, table in _TOPS.items()
        }
        conn.execute(text(f"CREATE TEMP TABLE s AS SELECT generate_series(1, {namespaces - 1}) k"))
        for table, moved, join in _COPIES:
            columns = (
                conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = :t"
                        " AND table_schema = current_schema() ORDER BY ordinal_position"
                    ),
                    {"t": table},
                )
                .scalars()
                .all()
            )
            values = ", ".join(moved.get(c, f't."{c}"') for c in columns)
            names = ", ".join(f'"{c}"' for c in columns)
            conn.execute(
                text(f"INSERT INTO {table} ({names}) SELECT {values} FROM {table} t {join}, s"), top
            )
        conn.execute(text(_CURRENT), top)
        for table in _TOPS.values():
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


async def client_loop(
    client: httpx.AsyncClient,
    urls: list[str],
    until: float,
    shape: tuple[int, int, int],
    out: dict[str, list[float]],
    errors: dict[str, int],
    seed: int,
) -> None:
    namespaces, envs, total = shape
    rng = random.Random(seed)
    base = urls[seed % len(urls)]  # one API process per client, as behind a load balancer
    while time.monotonic() < until:
        kind = rng.choice(READS)
        ns, env, build = (
            rng.randrange(namespaces),
            rng.randrange(envs),
            rng.randrange(1, total + 1),
        )
        path = {
            "env list": "/api/v1/environment/",
            "env get": f"/api/v1/environment/ns{ns}/env{env}/",
            "build get": f"/api/v1/build/{build}/",
            "build list (ns)": f"/api/v1/build/?namespace=ns{ns}",
            "build packages": f"/api/v1/build/{build}/packages/",
        }[kind]
        await _timed(client, "GET", base + path, kind, out, errors)


async def submit_loop(
    client: httpx.AsyncClient,
    urls: list[str],
    until: float,
    out: dict[str, list[float]],
    errors: dict[str, int],
    seed: int,
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        body = {
            # a new project each time: a spec that differs only in a comment is the same spec
            "specification": f"load-{uuid.uuid4().hex[:12]}==1.0\n",
            "environment_name": f"load{rng.randrange(20)}",
            "namespace": "load",
        }
        url = urls[seed % len(urls)] + "/api/v1/specification/"
        await _timed(client, "POST", url, "submit (L4)", out, errors, body)
        await asyncio.sleep(0.2)


async def _timed(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    kind: str,
    out: dict[str, list[float]],
    errors: dict[str, int],
    body: Any = None,
) -> None:
    started = time.perf_counter()
    try:
        response = await client.request(method, url, json=body)
        outcome = str(response.status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    out.setdefault(kind, []).append(time.perf_counter() - started)
    if outcome != "200":
        key = f"{kind}: {outcome}"
        errors[key] = errors.get(key, 0) + 1


async def load(args: argparse.Namespace) -> dict[str, Any]:
    """Every client and submitter has its own client (one connection), all made before the
    clock starts and sharing one SSL context: made in the window, each cost ~25 ms of the load
    process's CPU; one shared pool of 200 connections costs more per request than 200 pools."""
    urls, shape = args.urls.split(","), tuple(int(x) for x in args.shape.split(","))
    context = ssl.create_default_context()
    clients = [
        httpx.AsyncClient(timeout=30, verify=context) for _ in range(args.clients + args.submitters)
    ]
    out: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    cpu = time.process_time()
    until = time.monotonic() + args.seconds
    tasks = [
        client_loop(clients[n], urls, until, shape, out, errors, n)  # type: ignore[arg-type]
        for n in range(args.clients)
    ]
    tasks += [
        submit_loop(clients[args.clients + n], urls, until, out, errors, 10_000 + n)
        for n in range(args.submitters)
    ]
    started = time.monotonic()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu
    for client in clients:
        await client.aclose()
    return {"elapsed": elapsed, "latencies": out, "errors": errors, "cpu": cpu}


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # from the state on: the name may hold spaces


def cpu_snapshot(roots: dict[str, list[int]]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far (user + system, with reaped children) of every process of each
    role's trees, and of every PostgreSQL process, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {
        int(p.name): st
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and (st := _stat(int(p.name)))
    }
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(int(st[1]), []).append(pid)
    found: dict[int, tuple[str, float]] = {}

    def walk(role: str, pid: int) -> None:
        if pid in stats:
            found[pid] = (role, sum(int(x) for x in stats[pid][11:15]) / tick)
            for child in children.get(pid, []):
                walk(role, child)

    for role, pids in roots.items():
        for pid in pids:
            walk(role, pid)
    for pid, st in stats.items():
        if pid not in found and _comm(pid) == "postgres":
            found[pid] = ("PostgreSQL", sum(int(x) for x in st[11:15]) / tick)  # + reaped backends
    me = stats[os.getpid()]  # this process: the package index and the background builder
    found[os.getpid()] = ("index and builder", sum(int(x) for x in me[11:13]) / tick)
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    idle = int(busy[3]) + int(busy[4])  # idle and iowait
    found[0] = ("machine", (sum(int(x) for x in busy) - idle) / tick)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cpu_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per role between two snapshots (a process that ended meanwhile is lost,
    unless its parent reaped it)."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        used[role] = used.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return used


def report(result: dict[str, Any], api: int) -> None:
    latencies, errors = result["latencies"], result["errors"]
    reads = sum(len(latencies.get(k, [])) for k in READS)
    print(
        f"\n{api} API process(es): {reads / result['elapsed']:.0f} reads/s over {result['elapsed']:.0f} s"
    )
    print(
        f"{'route':18s} {'requests':>8s} {'errors':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}"
    )
    for kind in (*READS, "submit (L4)"):
        values = sorted(latencies.get(kind, []))
        if not values:
            print(f"{kind:18s} {0:8d}")
            continue
        q = [values[min(len(values) - 1, int(p * len(values)))] * 1000 for p in (0.5, 0.95, 0.99)]
        print(
            f"{kind:18s} {len(values):8d} {_errors(errors, kind):6d} {q[0]:8.1f} {q[1]:8.1f} {q[2]:8.1f}"
        )
    if errors:
        print("errors: " + ", ".join(f"{key} x{n}" for key, n in sorted(errors.items())))


def _errors(errors: dict[str, int], kind: str) -> int:
    return sum(n for key, n in errors.items() if key.startswith(f"{kind}: "))


def _completed(api_url: str) -> int:
    found = httpx.get(f"{api_url}/api/v1/build/?status=COMPLETED&size=1", timeout=30).json()
    return int(found["count"])


def keep_building(api_url: str, stop: threading.Event, every: float) -> None:
    """Workers build while the load runs: one small real build submitted every ``every`` s."""
    n, run = 0, uuid.uuid4().hex[:8]
    while every > 0 and not stop.wait(every):
        n += 1
        body = {
            "specification": f"bg-{run}-{n}==1.0\n",  # a new spec: a real build each time
            "environment_name": f"bg{n % 5}",
            "namespace": "bg",
        }
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{api_url}/api/v1/specification/", json=body, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", type=int, default=2)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--envs", type=int, default=50)
    parser.add_argument("--builds", type=int, default=5)
    parser.add_argument(
        "--build-every",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="submit one small real build every SECONDS during the load (0: none)",
    )
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="keep the populated database NAME (and its store) after the run and reuse it when it "
        "exists, so that a 50,000-build data set is populated once for several runs",
    )
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:  # the separate load process
        print(json.dumps(asyncio.run(load(args))))
        return
    name = args.keep or f"envstore_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    kept = Path(tempfile.gettempdir()) / f"envstore-load-{name}"
    root = kept if args.keep else Path(tempfile.mkdtemp(prefix="envstore-load-"))
    total = _kept_builds(admin, url, root, args) if args.keep else None
    try:
        if total is None:
            total = _fresh(admin, url, root, name, args)
        else:
            print(f"reusing {total} populated builds of database {name}")
        with local_index() as index:
            cluster = Cluster(root, url, ENVSTORE_PYPI_INDEX_URL=index.url)
            try:
                apis = [cluster.api() for _ in range(args.api)]
                cluster.worker(concurrency=1)
                time.sleep(8)  # the worker's start (imports, warm runners: ~4 s of CPU) settles
                stop = threading.Event()
                builder = threading.Thread(
                    target=keep_building, args=(apis[0].url, stop, args.build_every)
                )
                builder.start()
                command = [
                    sys.executable,
                    __file__,
                    "--load",
                    f"--urls={','.join(a.url for a in apis)}",
                    f"--shape={args.namespaces},{args.envs},{total}",
                    f"--clients={args.clients}",
                    f"--submitters={args.submitters}",
                    f"--seconds={args.seconds}",
                ]
                roots = {
                    "API": [a.process.pid for a in apis if a.process],
                    "worker": [w.process.pid for w in cluster.workers if w.process],
                }
                completed = _completed(apis[0].url)
                before = cpu_snapshot(roots)
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                used = cpu_used(before, cpu_snapshot(roots))
                stop.set()
                builder.join()
                result = json.loads(output.splitlines()[-1])
                report(result, args.api)
                used["load generator"] = result["cpu"]
                print(
                    f"CPU used over the {result['elapsed']:.0f} s (seconds of one core): "
                    + ", ".join(f"{k} {v:.1f}" for k, v in used.items())
                )
                print(f"builds completed meanwhile: {_completed(apis[0].url) - completed}")
            finally:
                cluster.close()
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            shutil.rmtree(root, ignore_errors=True)
        admin.dispose()


def _fresh(admin: Engine, url: str, root: Path, name: str, args: argparse.Namespace) -> int:
    """Create the database and populate it; a kept one is marked complete only at the end."""
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    fresh_schema(url)
    started = time.perf_counter()
    total = populate(url, root / "store", args.namespaces, args.envs, args.builds)
    print(f"populated {total} builds on PostgreSQL in {time.perf_counter() - started:.0f} s")
    (root / "populated").write_text(_shape(args))
    return total


def _shape(args: argparse.Namespace) -> str:
    return f"{args.namespaces} {args.envs} {args.builds}"


def _kept_builds(admin: Engine, url: str, root: Path, args: argparse.Namespace) -> int | None:
    """The build count of a kept, completely populated database of this shape, or None to
    populate anew (the load's own submits add a few hundred builds to it on every run)."""
    marker = root / "populated"
    if not marker.exists() or marker.read_text() != _shape(args):
        return None
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if found.first() is None:
            return None
    return int(args.namespaces * args.envs * args.builds)


if __name__ == "__main__":
    main()

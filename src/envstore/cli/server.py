"""Server-side commands: ``envstore serve``, ``envstore db upgrade``, ``envstore user``.

Unlike the rest of the CLI these run on the server host and import the server; they are
imported lazily so that client commands stay light. ``python -m envstore.cli.server --fd N`` is
one more API process of ``envstore serve --api-processes N``: started through this module rather
than the ``envstore`` command, it never loads the client commands (httpx, rich, ~9 MB, issue 11).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from envstore.settings import Settings

__all__ = ["register_server_commands"]


def register_server_commands(app: typer.Typer) -> None:
    app.command(
        "serve", help="Run the API and the build workers (embedded default: SQLite + local store)."
    )(serve)
    app.command(
        "worker", help="Run a Celery worker for builds and GC (distributed mode, docs/deploy.md)."
    )(worker)
    db = typer.Typer(help="Database schema management.", no_args_is_help=True)
    db.command("upgrade", help="Bring the database schema to this version of envstore.")(db_upgrade)
    app.add_typer(db, name="db")
    users = typer.Typer(help="Local accounts, written straight to the database.")
    users.command("add", help="Create a user (the first admin is made this way).")(user_add)
    users.command("passwd", help="Set a local user's password (ends their sessions).")(user_passwd)
    users.command("disable", help="Disable a user: sessions end, tokens stop working.")(
        user_disable
    )
    users.command("enable", help="Enable a disabled user again.")(user_enable)
    app.add_typer(users, name="user", no_args_is_help=True)
    app.command("gc", help="Expire builds by the retention settings; sweep unreferenced data.")(
        gc_command
    )


def serve(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default 8080)")] = None,
    workers: Annotated[int | None, typer.Option(help="concurrent builds (default 2)")] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="API only: builds run in `envstore worker`")
    ] = False,
    api_processes: Annotated[
        int | None,
        typer.Option(
            "--api-processes",
            min=1,
            max=64,
            help="processes answering the API on the one port (default 1); the build "
            "workers run in the first one only",
        ),
    ] = None,
) -> None:
    from envstore.auth.secret import resolve_secret
    from envstore.db.engine import make_engine
    from envstore.db.schema import ensure_schema
    from envstore.errors import EnvstoreError
    from envstore.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(
            host=host,
            port=port,
            workers=0 if no_workers else workers,
            api_processes=api_processes,
        )
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        ensure_schema(engine, auto_upgrade=settings.is_embedded_sqlite)
        engine.dispose()
        resolve_secret(settings)  # A8: refuse a weak configured secret before listening
        first_admin_needed = not _admin_exists(settings)
    except EnvstoreError as exc:
        typer.echo(f"envstore: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        typer.echo(f"envstore: cannot start: {exc}", err=True)
        raise typer.Exit(2) from None
    url = f"http://{settings.host}:{settings.port}{settings.url_prefix}/"
    builders = (
        "builds go to the Celery workers"
        if settings.broker_url
        else f"{settings.workers} build workers"
    )
    typer.echo(
        f"envstore {settings.store_dir} serving at {url} ({builders}, "
        f"{settings.api_processes} API process(es))"
    )
    if first_admin_needed:
        typer.echo(
            "no administrator exists yet: create one on this host with\n"
            "  envstore user add NAME --admin --password-stdin\n"
            f"then sign in with: {login_hint(settings.host, settings.port, settings.url_prefix)}"
        )
    _run_api(settings)


def _run_api(settings: Settings) -> None:
    """Serve the API (and the build workers) in this process, and ``api_processes - 1`` more
    API-only processes on the same listening socket: the kernel hands each connection to one
    of them. Builds, pack jobs and the garbage collector stay in this process alone."""
    import ctypes
    import socket
    import subprocess

    from envstore.api.app import create_app

    limit_malloc_arenas(ctypes.CDLL(None, use_errno=True))
    listener = socket.create_server(
        (settings.host, settings.port),
        family=socket.AF_INET6 if ":" in settings.host else socket.AF_INET,
        backlog=2048,
    )
    listener.set_inheritable(True)
    env = {**os.environ, "ENVSTORE_WORKERS": "0", "ENVSTORE_API_PROCESSES": "1"}
    helpers = [
        subprocess.Popen(
            [sys.executable, "-m", "envstore.cli.server", "--fd", str(listener.fileno())],
            pass_fds=(listener.fileno(),),
            env=env,
        )
        for _ in range(settings.api_processes - 1)
    ]

    def stop_helpers() -> None:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()

    try:
        _serve_socket(create_app(settings), listener, on_shutdown=stop_helpers)
    finally:
        stop_helpers()  # when the server could not start


def _serve_socket(app: Any, listener: Any, on_shutdown: Callable[[], None] | None = None) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            # uvicorn raises the stopping signal again after this, which ends the process
            # before any ``finally`` of ours: the helpers are stopped here
            if on_shutdown is not None:
                on_shutdown()

    # uvloop and httptools: a cheaper event loop and HTTP parser than asyncio's and h11
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", log_level="info", access_log=False
    )
    Server(config).run(sockets=[listener])


_M_ARENA_MAX = -8  # mallopt's option number, from glibc's malloc.h


def limit_malloc_arenas(libc: Any) -> None:
    """Two glibc malloc arenas for an API process, unless ``MALLOC_ARENA_MAX`` says otherwise.

    glibc gives each new thread its own arena, up to 8 per core: the thread pool of the routes
    left ~16 MB more after a burst of reads; 2 arenas (one besides the main one) keep ~6 MB of
    that, for no measured CPU per request (benchmarks/README.md, issue 11). Set in the process,
    not in the environment: build runners keep glibc's default."""
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(_M_ARENA_MAX, 2)


def serve_api(
    fd: Annotated[int, typer.Option("--fd", help="the listening socket, inherited")],
) -> None:
    """One more API process of ``envstore serve --api-processes N`` (no build workers)."""
    import ctypes
    import signal
    import socket

    from envstore.api.app import create_app
    from envstore.settings import load_settings

    libc = ctypes.CDLL(None, use_errno=True)
    limit_malloc_arenas(libc)
    # Linux: SIGTERM this process when the serving parent dies, even by kill -9, so that no
    # API process outlives the one that holds the workers (PR_SET_PDEATHSIG is option 1).
    libc.prctl(1, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above
        return
    settings = load_settings()
    _serve_socket(create_app(settings, start_workers=False), socket.socket(fileno=fd))


def login_hint(host: str, port: int, url_prefix: str) -> str:
    """The exact ``envstore login`` command for a server on ``host:port`` under ``url_prefix``.

    It names the URL the CLI will use: the CLI's default (``http://localhost:8080``) needs no
    ``--url``, and a loopback or wildcard address is spelled ``localhost`` as that default is.
    """
    from envstore.cli.client import DEFAULT_URL

    if host in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost"):  # noqa: S104 - a name, not a bind
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}{url_prefix.rstrip('/')}"
    option = "" if url == DEFAULT_URL else f" --url {url}"
    return f"envstore{option} login --username NAME --password-stdin"


_JOB_KINDS = ("builds", "artifacts", "gc")


def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="builds this worker runs at once")
    ] = 2,
    queues: Annotated[
        str, typer.Option(help="job kinds to serve, comma-separated: builds,artifacts,gc")
    ] = "builds,artifacts,gc",
) -> None:
    from envstore.db.engine import make_engine
    from envstore.db.schema import ensure_schema
    from envstore.errors import EnvstoreError
    from envstore.jobs.celery_worker import run_worker
    from envstore.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kinds = [k.strip() for k in queues.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(_JOB_KINDS))
    if not kinds or unknown:
        typer.echo(f"envstore: unknown job kinds {unknown or queues!r}; use {_JOB_KINDS}", err=True)
        raise typer.Exit(2)
    try:
        settings = load_settings()
        if not settings.broker_url:
            raise ValueError("envstore worker needs ENVSTORE_BROKER_URL (redis:// or amqp://)")
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        ensure_schema(engine, auto_upgrade=False)
        engine.dispose()
    except EnvstoreError as exc:
        typer.echo(f"envstore: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        typer.echo(f"envstore: cannot start the worker: {exc}", err=True)
        raise typer.Exit(2) from None
    run_worker(settings, concurrency, kinds)


def db_upgrade() -> None:
    from envstore.db.engine import current_revision, make_engine, upgrade
    from envstore.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
    except Exception as exc:
        typer.echo(f"envstore: database upgrade failed: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"database at revision {current_revision(engine)}")


def gc_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would be freed, delete nothing")
    ] = False,
) -> None:
    import json

    from envstore.jobs.gc import run_gc_once
    from envstore.settings import load_settings

    report = run_gc_once(load_settings(), dry_run=dry_run)
    typer.echo(report.summary())
    typer.echo(json.dumps(report.to_dict()))


def _admin_exists(settings: Settings) -> bool:
    from envstore.services.users import admin_exists, user_store

    with user_store(settings) as db:
        return admin_exists(db)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def user_add(
    name: Annotated[str, typer.Argument(help="user name (also their namespace)")],
    admin: Annotated[bool, typer.Option("--admin", help="administrator: admin on */*")] = False,
    group: Annotated[
        list[str] | None, typer.Option("--group", help="a group to join (repeat)")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    from envstore.services.users import add_user, user_store
    from envstore.settings import load_settings

    password = _read_password(password_stdin)
    with user_store(load_settings()) as db:
        add_user(db, name, password, admin=admin, groups=group or ())
    typer.echo(f"user {name} created{' (administrator)' if admin else ''}")


def user_passwd(
    name: Annotated[str, typer.Argument(help="user name")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    from envstore.services.users import set_password, user_store
    from envstore.settings import load_settings

    password = _read_password(password_stdin)
    with user_store(load_settings()) as db:
        set_password(db, name, password)
    typer.echo(f"password of {name} changed; their browser sessions have ended")


def _set_disabled(name: str, disabled: bool) -> None:
    from envstore.services.users import set_disabled, user_store
    from envstore.settings import load_settings

    with user_store(load_settings()) as db:
        set_disabled(db, name, disabled)


def user_disable(name: Annotated[str, typer.Argument(help="user name")]) -> None:
    _set_disabled(name, True)
    typer.echo(f"user {name} disabled; their sessions have ended and their tokens are refused")


def user_enable(name: Annotated[str, typer.Argument(help="user name")]) -> None:
    _set_disabled(name, False)
    typer.echo(f"user {name} enabled")


if __name__ == "__main__":  # an extra API process, started by _run_api
    typer.run(serve_api)

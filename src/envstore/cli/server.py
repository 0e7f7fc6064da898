"""Server-side commands: ``envstore serve`` and ``envstore db upgrade``.

Unlike the rest of the CLI these run on the server host and import the server; they are
imported lazily so that client commands stay light.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

__all__ = ["register_server_commands"]


def register_server_commands(app: typer.Typer) -> None:
    app.command(
        "serve", help="Run the API and the build workers (embedded default: SQLite + local store)."
    )(serve)
    db = typer.Typer(help="Database schema management.", no_args_is_help=True)
    db.command("upgrade", help="Bring the database schema to this version of envstore.")(db_upgrade)
    app.add_typer(db, name="db")


def serve(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default 8080)")] = None,
    workers: Annotated[int | None, typer.Option(help="concurrent builds (default 2)")] = None,
) -> None:
    import uvicorn

    from envstore.api.app import create_app
    from envstore.db.engine import make_engine
    from envstore.db.schema import ensure_schema
    from envstore.errors import EnvstoreError
    from envstore.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(host=host, port=port, workers=workers)
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        ensure_schema(engine, auto_upgrade=settings.is_embedded_sqlite)
        engine.dispose()
    except EnvstoreError as exc:
        typer.echo(f"envstore: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        typer.echo(f"envstore: cannot start: {exc}", err=True)
        raise typer.Exit(2) from None
    url = f"http://{settings.host}:{settings.port}{settings.url_prefix}/"
    typer.echo(f"envstore {settings.store_dir} serving at {url} ({settings.workers} build workers)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )


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

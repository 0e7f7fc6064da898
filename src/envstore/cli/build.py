"""``envstore build ...``: one build at a time, by id.

Builds are addressed by their integer id everywhere in the API, so these commands take ``ID``;
``--env NS/NAME`` on ``build list`` is the only place a name is turned into a filter.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from envstore.cli.client import EnvstoreClient
from envstore.cli.common import open_client, parse_env, parse_status
from envstore.cli.follow import LogStream, follow_build
from envstore.cli.output import (
    build_rows,
    build_summary,
    out_console,
    print_json,
    print_pairs,
    print_table,
)
from envstore.core.refs import EnvRef

__all__ = ["build_app"]

build_app = typer.Typer(help="List, inspect, follow, cancel and rebuild builds.")

BuildId = Annotated[int, typer.Argument(metavar="ID", min=1, help="Build id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON data.")]


@build_app.command("list")
def list_(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", metavar="NS/NAME")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="QUEUED, BUILDING, COMPLETED, FAILED, CANCELED.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N (0: all).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List builds, newest first (* marks current ones), of one environment or in one state."""
    env_ref = parse_env(env) if env else None
    wanted_status = parse_status(status)
    with open_client(ctx) as client:
        builds = client.list_builds(
            namespace=env_ref.namespace if env_ref else None,
            name=env_ref.name if env_ref else None,
            status=wanted_status,
            limit=limit,
        )
        if as_json:
            print_json(builds)
            return
        current = _current_ids(client, env_ref) if builds else set()
    print_table(
        ["", "id", "environment", "status", "scheduled", "ended", "info"],
        build_rows(builds, current),
        empty="no builds",
    )


def _current_ids(client: EnvstoreClient, env_ref: EnvRef | None) -> set[int]:
    """Ids of the current builds of the environments (one, or all visible) a listing shows."""
    if env_ref is not None:
        envs = [client.get_environment(env_ref.namespace, env_ref.name)]
    else:
        envs = client.list_environments()
    return {int(e["current_build_id"]) for e in envs if e.get("current_build_id") is not None}


@build_app.command("show")
def show(ctx: typer.Context, build_id: BuildId, as_json: JsonOption = False) -> None:
    """Show one build."""
    with open_client(ctx) as client:
        build = client.get_build(build_id)
        if as_json:
            print_json(build)
            return
        packages = client.package_count(build_id)
        where = build.get("environment") or {}
        env = client.get_environment(str(where.get("namespace")), str(where.get("name")))
    current = env.get("current_build_id") == build_id
    print_pairs(build_summary(build, packages=packages, current=current))


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@build_app.command("logs")
def logs(
    ctx: typer.Context,
    build_id: BuildId,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep streaming until the build ends.")
    ] = False,
) -> None:
    """Print a build's log; with --follow, stream it and exit with the build's outcome."""
    with open_client(ctx) as client:
        if follow:
            raise typer.Exit(follow_build(client, build_id))
        stream = LogStream(_write_stdout)
        # Long logs may come in several slices; read until the offset stops moving. A missing
        # build is a 404 here (unlike while following, where a log may not exist yet).
        while True:
            chunk = client.build_logs(build_id, stream.offset)
            moved = chunk.next_offset != stream.offset and bool(chunk.data)
            stream.feed(chunk.data, chunk.next_offset)
            if not moved:
                break
        stream.finish()


@build_app.command("cancel")
def cancel(ctx: typer.Context, build_id: BuildId) -> None:
    """Cancel a queued or running build."""
    with open_client(ctx) as client:
        message = client.cancel_build(build_id)
    out_console().print(message or f"build {build_id} canceled")


@build_app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    build_id: BuildId,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the new build to its end.")] = False,
) -> None:
    """Queue a new build of the same specification."""
    with open_client(ctx) as client:
        new_id = client.rebuild(build_id)
        out_console().print(f"build {new_id} queued (rebuild of build {build_id})")
        if wait:
            raise typer.Exit(follow_build(client, new_id))


@build_app.command("rebuild-artifacts")
def rebuild_artifacts(ctx: typer.Context, build_id: BuildId) -> None:
    """Make the archive and image of a COMPLETED build again (after they failed)."""
    with open_client(ctx) as client:
        status = client.rebuild_artifacts(build_id)
    out_console().print(f"artifacts of build {build_id}: {status or 'queued'}")

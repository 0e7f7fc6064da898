"""``envstore env ...`` and ``envstore lockfile``: environments seen from the user's side.

``env create`` sends the file's text as is (environment.yaml, requirements.txt or a lockfile);
the server parses and checks it in the request. Locally the CLI only reads what it needs to
name the environment and validates names, dates and references so that mistakes are reported
before any request.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from envstore.cli.client import EnvstoreClient, anonymous_hint
from envstore.cli.common import open_client, parse_env, parse_selector_ref
from envstore.cli.follow import follow_build, stopped_following
from envstore.cli.output import (
    build_summary,
    environment_rows,
    environment_summary,
    out_console,
    print_json,
    print_pairs,
    print_table,
)
from envstore.core.names import validate_name
from envstore.core.yamlsafe import load_bounded_yaml
from envstore.errors import InvalidInput, InvalidSpec

__all__ = ["env_app", "environment_name_for", "lockfile_command", "read_spec_file", "valid_as_of"]

env_app = typer.Typer(help="Create, list, inspect, roll back and delete environments.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON data.")]


def read_spec_file(path: Path) -> str:
    """The file's text, or one readable :class:`InvalidInput` line explaining why not."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, expected a spec file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None


def _yaml_name(text: str) -> str | None:
    """The ``name:`` of an environment.yaml, or None (requirements.txt, lockfile, bad YAML).

    A spec that does not parse is not refused here: the server gives the authoritative
    message, naming the line, in its 400 answer.
    """
    try:
        data: Any = load_bounded_yaml(text, max_depth=20, max_aliases=16)
    except (InvalidSpec, InvalidInput):
        return None
    if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"]:
        return str(data["name"])
    return None


def environment_name_for(text: str, path: Path, explicit: str | None) -> str:
    """``--name``, else the YAML ``name:``, else the file stem; always a valid name."""
    name = explicit or _yaml_name(text) or path.stem
    return validate_name(name, kind="environment name")


def valid_as_of(text: str | None) -> str | None:
    """Check ``--as-of`` is ``YYYY-MM-DD`` or an ISO datetime; send it unchanged."""
    if text is None:
        return None
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--as-of {text!r} is not a date (2022-05-31) or an ISO datetime"
        ) from None
    return text


def _where(client: EnvstoreClient, build_id: int, env_name: str) -> str:
    environment = client.get_build(build_id).get("environment")
    if isinstance(environment, dict) and environment.get("namespace"):
        return f"{environment['namespace']}/{env_name}"
    return env_name


@env_app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Option("-f", "--file", help="environment.yaml, requirements.txt or lockfile.")
    ],
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Default: your primary namespace.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Environment name.")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Solve as the indexes were at this date.")
    ] = None,
    lockfile: Annotated[
        bool, typer.Option("--lockfile", help="FILE is a conda-lock file.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the build to its end.")] = False,
) -> None:
    """Submit a specification; a new build of the environment is queued."""
    text = read_spec_file(file)
    env_name = environment_name_for(text, file, name)
    if namespace is not None:
        validate_name(namespace, kind="namespace")
    as_of = valid_as_of(as_of)
    with open_client(ctx) as client:
        build_id, unchanged = client.submit_specification(
            text,
            environment_name=env_name,
            namespace=namespace,
            description=description,
            is_lockfile=lockfile,
            as_of=as_of,
        )
        # The server picks the caller's primary namespace when none is given; ask which.
        try:
            _report_submission(client, build_id, unchanged, namespace, env_name, wait)
        except KeyboardInterrupt:  # the build exists now: Ctrl-C leaves it alone
            raise typer.Exit(stopped_following(build_id)) from None


def _report_submission(
    client: EnvstoreClient,
    build_id: int,
    unchanged: bool,
    namespace: str | None,
    env_name: str,
    wait: bool,
) -> None:
    if unchanged:
        # The build that stands for this spec already exists: say which, and never replay a
        # finished build's log as if it were building now.
        status = str(client.get_build(build_id).get("status"))
        if status == "COMPLETED":
            out_console().print(f"unchanged: build {build_id} is current ({status})")
            return
        out_console().print(f"unchanged: build {build_id} is already {status}")
    else:
        where = f"{namespace}/{env_name}" if namespace else _where(client, build_id, env_name)
        out_console().print(f"build {build_id} queued for {where}")
    if wait:
        raise typer.Exit(follow_build(client, build_id))


@env_app.command("list")
def list_(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace")] = None,
    search: Annotated[str | None, typer.Option("--search", help="Substring of the name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N (0: all).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List the environments you can see."""
    if namespace is not None:
        validate_name(namespace, kind="namespace")
    with open_client(ctx) as client:
        envs = client.list_environments(namespace=namespace, search=search, limit=limit)
    if as_json:
        print_json(envs)
        return
    print_table(
        ["environment", "current build", "status", "description"],
        environment_rows(envs),
        empty="no environments",
    )
    if not envs and client.anonymous:
        # An empty list is what an anonymous caller sees on most servers: say why.
        sys.stderr.write(f"note: {anonymous_hint(client.url)}\n")


@env_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NS/NAME[@BUILD|@DATE]")],
    as_json: JsonOption = False,
) -> None:
    """Show an environment, or the build a reference names."""
    env_ref, selector = parse_selector_ref(ref)
    with open_client(ctx) as client:
        env = client.get_environment(env_ref.namespace, env_ref.name)
        # The environment's embedded current_build lacks the envstore fields (key, prefix);
        # resolving the empty selector returns the full build.
        build: dict[str, Any] | None = None
        packages: int | None = None
        if selector or env.get("current_build_id") is not None:
            build = client.resolve(env_ref.namespace, env_ref.name, selector)
            if not as_json:
                packages = client.package_count(int(build["id"]))
    if as_json:
        print_json(build if selector else env)
        return
    if not selector:
        print_pairs(environment_summary(env))
        if build is not None:
            out_console().print()
    if build is not None:
        current = build.get("id") == env.get("current_build_id")
        print_pairs(build_summary(build, packages=packages, current=current))


@env_app.command("rollback")
def rollback(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NS/NAME")],
    build_id: Annotated[int, typer.Argument(metavar="BUILD", min=1)],
) -> None:
    """Make an earlier build the current one."""
    env_ref = parse_env(ref)
    with open_client(ctx) as client:
        message = client.set_current_build(env_ref.namespace, env_ref.name, build_id)
    out_console().print(message or f"{ref} now uses build {build_id}")


@env_app.command("delete")
def delete(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NS/NAME")],
) -> None:
    """Delete an environment: it and its builds are gone from every list; gc frees the space."""
    env_ref = parse_env(ref)
    with open_client(ctx) as client:
        message = client.delete_environment(env_ref.namespace, env_ref.name)
    out_console().print(message or f"{ref} deleted")


def lockfile_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NS/NAME[@BUILD|@DATE]")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the conda-lock file of the current build, or of the build a reference names."""
    env_ref, selector = parse_selector_ref(ref)
    with open_client(ctx) as client:
        if selector:
            build = client.resolve(env_ref.namespace, env_ref.name, selector)
            text = client.build_lockfile(int(build["id"]))
        else:
            text = client.environment_lockfile(env_ref.namespace, env_ref.name)
    if output is None:
        # Written byte-for-byte: the file is meant to be redirected and fed back to envstore.
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{output}: cannot write: {exc.strerror or exc}") from None

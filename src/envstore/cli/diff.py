"""``envstore diff A B`` (packages changed between two builds) and ``envstore artifact``
(download a build's lockfile, YAML, explicit list, archive or logs; print its image reference).

Both talk to the server over HTTP only, through the routes of ``api/routes/artifacts.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from envstore.cli.client import error_from_response
from envstore.cli.common import Connection
from envstore.cli.credentials import stored_token
from envstore.errors import InvalidInput, Unavailable

__all__ = ["artifact_command", "diff_command"]

_ROUTES = {
    "lockfile": "lockfile/",
    "yaml": "yaml/",
    "explicit": "explicit/",
    "archive": "archive/",
    "logs": "logs/",
    "docker": "docker/",
}


def _connection(ctx: typer.Context) -> Connection:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Connection) else Connection()


def _get(ctx: typer.Context, path: str, target: Path | None = None) -> httpx.Response:
    """GET ``/api/v1/<path>``, following redirects to the blob store; stream to ``target``."""
    connection = _connection(ctx)
    # --token / ENVSTORE_TOKEN first, then the token `envstore login` kept, as every command.
    token = connection.token or stored_token(connection.url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{connection.url.rstrip('/')}/api/v1/{path}"
    try:
        with (
            httpx.Client(headers=headers, timeout=300, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                response.read()
                anonymous = None if token else connection.url
                raise error_from_response(response, anonymous_at=anonymous)
            if target is None:
                response.read()
                return response
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            return response
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach envstore at {connection.url}: {exc}") from None


def _line(entry: dict[str, Any], sign: str) -> str:
    role = "requested" if entry.get("requested") else "dependency"
    if sign == "~":
        version = f"{entry['old_version']} -> {entry['new_version']}"
    else:
        version = entry["version"]
    return f"{sign} {entry['name']} {version} ({entry['manager']}, {role})"


def diff_command(
    ctx: typer.Context,
    old: Annotated[int, typer.Argument(help="build id to diff from")],
    new: Annotated[int, typer.Argument(help="build id to diff to")],
    as_json: Annotated[bool, typer.Option("--json", help="print the diff as JSON")] = False,
) -> None:
    """Packages added (+), removed (-) and changed (~) from build OLD to build NEW."""
    diff = _get(ctx, f"build/{old}/diff/{new}/").json()["data"]
    if as_json:
        sys.stdout.write(json.dumps(diff, indent=2) + "\n")
        return
    lines = [f"build {old} -> build {new}"]
    lines += [_line(e, "+") for e in diff["added"]]
    lines += [_line(e, "-") for e in diff["removed"]]
    lines += [_line(e, "~") for e in diff["changed"]]
    changes = len(lines) - 1
    lines.append(f"{changes} change(s), {diff['unchanged']} unchanged")
    sys.stdout.write("\n".join(lines) + "\n")


def artifact_command(
    ctx: typer.Context,
    build_id: Annotated[int, typer.Argument(help="build id")],
    kind: Annotated[str, typer.Argument(help=f"one of: {', '.join(_ROUTES)}")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file (default stdout)")
    ] = None,
) -> None:
    """Download one artifact of a build (``docker`` prints the image's pull reference)."""
    if kind not in _ROUTES:
        raise InvalidInput(f"unknown artifact {kind!r}; expected one of {', '.join(_ROUTES)}")
    path = f"build/{build_id}/{_ROUTES[kind]}"
    if kind == "docker":
        data = _get(ctx, path).json()["data"]
        sys.stdout.write(f"{data['image']}\n")
        return
    if output is not None:
        _get(ctx, path, output)
        sys.stderr.write(f"wrote {output} ({output.stat().st_size} bytes)\n")
        return
    sys.stdout.buffer.write(_get(ctx, path).content)

"""``envstore login``, ``logout`` and ``token create|list|revoke``: API tokens for the CLI.

``login`` signs in with a user name and password (or checks a given token), asks the server
for an API token and keeps it in :mod:`envstore.cli.credentials`; every later command sends
it as ``Authorization: Bearer`` unless ``--token``/``ENVSTORE_TOKEN`` says otherwise.
"""

from __future__ import annotations

import json
import socket
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from envstore.cli.client import EnvstoreClient
from envstore.cli.common import Connection, open_client
from envstore.cli.credentials import forget_token, store_token
from envstore.errors import Forbidden, InvalidInput

__all__ = ["login_command", "logout_command", "token_app"]

token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


def _connection(ctx: typer.Context) -> Connection:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Connection) else Connection()


def login_command(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Option("--username", "-u", help="user name")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    token: Annotated[
        str | None, typer.Option("--token", help="keep this token (made in the web UI) instead")
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", help="where `env create` goes without -n (default: yours)"),
    ] = None,
) -> None:
    """Sign in and keep an API token for this server."""
    connection = _connection(ctx)
    if token is None:
        name, password = _credentials(username, password_stdin)
        with EnvstoreClient(connection.url) as client:
            token = client.login(
                name,
                password,
                token_name=f"envstore CLI on {socket.gethostname()}",
                namespace=namespace,
            )
    with EnvstoreClient(connection.url, token=token) as client:
        who = client.permissions()
    if not who.get("authenticated"):
        raise Forbidden("the server does not accept this token")
    path = store_token(connection.url, token)
    typer.echo(
        f"signed in to {connection.url} (primary namespace {who.get('primary_namespace')}); "
        f"token in {path}"
    )


def _credentials(username: str | None, password_stdin: bool) -> tuple[str, str]:
    """The user name and password, from the options, standard input or the terminal.

    Without a terminal nothing can be asked (getpass would warn, then read stdin, then fail at
    its end): that is bad input, said in one line, before any prompt.
    """
    interactive = sys.stdin.isatty()
    if username is None and not interactive:
        raise InvalidInput("no terminal to ask for the user name: pass --username NAME")
    if not password_stdin and not interactive:
        raise InvalidInput(
            "no terminal to ask for the password: pass --password-stdin and the password on "
            "standard input (or --token)"
        )
    name = username or str(typer.prompt("User name"))
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("--password-stdin: standard input holds no password")
        return name, password
    return name, str(typer.prompt("Password", hide_input=True))


def logout_command(ctx: typer.Context) -> None:
    """Forget the token kept for this server (revoke it with `token revoke` too)."""
    connection = _connection(ctx)
    gone = forget_token(connection.url)
    typer.echo("token forgotten" if gone else f"no token kept for {connection.url}")


def _parse_roles(items: list[str]) -> dict[str, list[str]] | None:
    if not items:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        pattern, sep, role = item.partition("=")
        if not sep or not pattern or not role:
            raise InvalidInput(f"--role {item!r}: expected PATTERN=ROLE, e.g. team/*=viewer")
        out.setdefault(pattern, []).append(role)
    return out


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="what the token is for")] = "",
    days: Annotated[
        float | None, typer.Option("--expires-in", help="days until it expires", min=0.001)
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="narrow it to PATTERN=ROLE (repeat), e.g. team/*=viewer"),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="primary namespace of the token")
    ] = None,
) -> None:
    """Create a token (printed once: keep it) no wider than your own rights."""
    expires = (datetime.now(UTC) + timedelta(days=days)).isoformat() if days else None
    with open_client(ctx) as client:
        data = client.create_token(
            name=name,
            expiration=expires,
            role_bindings=_parse_roles(role or []),
            namespace=namespace,
        )
    typer.echo(data["token"])
    typer.echo(f"token {data['id']} expires {data['expiration']}", err=True)


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Your live tokens (their secrets are not kept by the server)."""
    with open_client(ctx) as client:
        tokens = client.list_tokens()
    if as_json:
        typer.echo(json.dumps(tokens, indent=2))
        return
    for t in tokens:
        roles = json.dumps(t["role_bindings"]) if t["role_bindings"] is not None else "all"
        typer.echo(
            f"{t['id']:>6}  {t['name'] or '-':<30} expires {t['expiration']}  "
            f"last used {t['last_used'] or 'never'}  roles {roles}"
        )


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context, token_id: Annotated[int, typer.Argument(help="token id")]
) -> None:
    """Revoke a token: it stops working on the very next request."""
    with open_client(ctx) as client:
        typer.echo(client.revoke_token(token_id))

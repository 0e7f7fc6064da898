"""The ``envstore`` command: wiring of the sub-commands and the one place errors become exits.

Exit codes are a contract for scripts:

* 0 success; 1 a followed build ended FAILED or CANCELED (``run`` passes the command's own code);
* 2 the request or the local input is wrong (bad file, bad reference, any HTTP 4xx);
* 3 the server is unreachable or broken (connection refused, timeout, HTTP 5xx).

Commands raise :mod:`envstore.errors` classes and never print tracebacks; :func:`run_cli`
turns each error into one ``envstore: error: ...`` line on stderr. ``ENVSTORE_DEBUG=1`` lets an
unexpected exception through with its traceback, for bug reports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.main import get_command

from envstore.cli.auth import login_command, logout_command, token_app
from envstore.cli.build import build_app
from envstore.cli.client import DEFAULT_URL, ServerError
from envstore.cli.common import Connection
from envstore.cli.diff import artifact_command, diff_command
from envstore.cli.env import env_app, lockfile_command
from envstore.cli.governance import audit_command, policy_app, settings_app
from envstore.cli.kernels import kernel_command, kernels_app
from envstore.cli.output import print_error
from envstore.cli.run import run_command
from envstore.cli.server import register_server_commands
from envstore.errors import EnvstoreError, Unavailable

__all__ = ["app", "exit_code_for_error", "main", "run_cli"]

EXIT_BAD_INPUT = 2
EXIT_SERVER = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="envstore",
    help="Reproducible conda and PyPI environments, built and kept by an envstore server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(env_app, name="env", no_args_is_help=True)
app.add_typer(build_app, name="build", no_args_is_help=True)
app.add_typer(token_app, name="token", no_args_is_help=True)
app.add_typer(settings_app, name="settings", no_args_is_help=True)
app.add_typer(policy_app, name="policy", no_args_is_help=True)
app.command("audit")(audit_command)
app.add_typer(kernels_app, name="kernels", no_args_is_help=True)
app.command("kernel")(kernel_command)
app.command("login")(login_command)
app.command("logout")(logout_command)
app.command("lockfile")(lockfile_command)
app.command("diff")(diff_command)
app.command("artifact")(artifact_command)
# Everything after the reference belongs to CMD, so `run ns/env python -c ...` needs no `--`.
app.command(
    "run", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)(run_command)


def _version() -> str:
    try:
        return version("envstore")
    except PackageNotFoundError:
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"envstore {_version()}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="ENVSTORE_URL", help="Server base URL.")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="ENVSTORE_TOKEN", help="API token.", show_default=False),
    ] = None,
    _version_flag: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Talk to an envstore server over HTTP."""
    ctx.obj = Connection(url=url, token=token or None)


# `serve` and `db upgrade` run the server in-process; their module imports the server stack
# only inside the commands, so client commands stay light.
register_server_commands(app)


def exit_code_for_error(error: EnvstoreError) -> int:
    """3 when the server is at fault or out of reach, 2 for anything about the request."""
    if isinstance(error, Unavailable | ServerError):
        return EXIT_SERVER
    return EXIT_BAD_INPUT


def _is_usage_error(error: BaseException) -> bool:
    # Typer vendors its own copy of click's exception classes (typer._click, private), so
    # usage errors are recognised by their interface rather than by a class we import.
    return callable(getattr(error, "format_message", None)) and isinstance(
        getattr(error, "exit_code", None), int
    )


def _usage_line(error: BaseException) -> str:
    """A usage error as one line that still points at the right ``--help``."""
    message = str(error.format_message())  # type: ignore[attr-defined]
    path = getattr(getattr(error, "ctx", None), "command_path", None)
    return f"{message} (see '{path} --help')" if path else message


def _plain_flags(command: Any, parent: typer.Context | None = None) -> None:
    """Show flags as flags in help: no ``<bool>`` type column for ``--wait`` or ``--help``.

    Typer's rich help prints every option's type, flags included; an option's ``metavar``
    replaces it, so flags (the help option too, made per command) get an empty one.
    """
    ctx = typer.Context(command, info_name=command.name, parent=parent)
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub in (getattr(command, "commands", None) or {}).values():
        _plain_flags(sub, ctx)


def run_cli(args: Sequence[str] | None = None) -> int:
    """Run the CLI on ``args`` and return the exit code; errors are printed, never raised."""
    command = get_command(app)
    _plain_flags(command)
    argv = list(sys.argv[1:] if args is None else args)
    try:
        result = command.main(argv, prog_name="envstore", standalone_mode=False)
    except EnvstoreError as error:
        print_error(error.message)
        return exit_code_for_error(error)
    except typer.Exit as done:
        return int(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except Exception as unexpected:
        if _is_usage_error(unexpected):
            print_error(_usage_line(unexpected))
            return int(unexpected.exit_code)  # type: ignore[attr-defined]
        if os.environ.get("ENVSTORE_DEBUG"):
            raise
        print_error(
            f"unexpected {type(unexpected).__name__}: {unexpected} "
            "(set ENVSTORE_DEBUG=1 to see the traceback)"
        )
        return EXIT_SERVER
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point (``envstore = envstore.cli.main:main``)."""
    sys.exit(run_cli())

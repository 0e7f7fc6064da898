"""``envstore kernels sync`` and ``envstore kernel``: envstore environments as Jupyter kernels.

The work is done in :mod:`envstore.jupyter` (installed with the ``jupyter`` extra); these are
the command-line entry points, with the CLI's connection options and error handling.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from envstore.cli.common import open_client
from envstore.errors import InvalidInput, Unavailable
from envstore.jupyter.kernelspecs import kernels_dir, sync_kernelspecs
from envstore.jupyter.launcher import launch_kernel

__all__ = ["kernel_command", "kernels_app"]

kernels_app = typer.Typer(help="Jupyter kernelspecs for the environments you may read.")


@kernels_app.command("sync")
def sync_command(
    ctx: typer.Context,
    user: Annotated[bool, typer.Option("--user", help="Your Jupyter data dir (default).")] = False,
    sys_prefix: Annotated[
        bool, typer.Option("--sys-prefix", help="This Python environment's share/jupyter.")
    ] = False,
    prefix: Annotated[
        str | None, typer.Option("--prefix", metavar="P", help="P/share/jupyter/kernels.")
    ] = None,
    pin: Annotated[
        list[str] | None,
        typer.Option("--pin", metavar="NS/NAME@KEY|@DATE", help="Also a kernel for that build."),
    ] = None,
) -> None:
    """Write a kernelspec per environment with ipykernel; remove the ones that are gone."""
    if sum((user, sys_prefix, prefix is not None)) > 1:
        raise InvalidInput("choose one of --user, --sys-prefix, --prefix")
    directory = kernels_dir(user=user, sys_prefix=sys_prefix, prefix=prefix)
    with open_client(ctx) as client:
        report = sync_kernelspecs(client, directory, pins=tuple(pin or ()))
    if report.offline is not None:
        sys.stderr.write(
            f"envstore: warning: {report.offline}; kernelspecs in {directory} left as they are\n"
        )
        raise typer.Exit(3)
    for name in report.written:
        sys.stdout.write(f"wrote {directory / name}\n")
    for name in report.removed:
        sys.stdout.write(f"removed {directory / name}\n")
    total = len(report.written) + len(report.unchanged)
    sys.stdout.write(f"{total} envstore kernel(s) in {directory}\n")


def kernel_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NS/NAME[@BUILD|@DATE]")],
    connection_file: Annotated[
        str, typer.Option("-f", "--connection-file", help="Jupyter's connection file.")
    ],
) -> None:
    """Start an ipykernel in the build REF names (what envstore kernelspecs run)."""
    if not Path(connection_file).is_file():
        raise InvalidInput(f"connection file {connection_file} does not exist")
    try:
        launch_kernel(open_client(ctx), ref, connection_file, os.environ)
    except Unavailable as exc:
        raise Unavailable(f"cannot start the kernel {ref}: {exc.message}") from None

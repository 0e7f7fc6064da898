"""``envstore run NS/NAME[@REF] -- CMD...``: run a command inside a built environment.

The server names the build's prefix as a path on *its* host. When the CLI runs on that host
(or on one sharing the store directory) the prefix is used in place, activated the way
``conda activate`` and venv's ``activate`` do: ``bin`` first on ``PATH``, ``CONDA_PREFIX`` and
``VIRTUAL_ENV`` set, the spec's ``variables`` exported. Elsewhere the archive artifact will be
downloaded (a later issue); until then the command says so and exits 2.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from envstore.cli.common import open_client, parse_selector_ref
from envstore.core.builds import BuildStatus
from envstore.errors import Conflict, InvalidInput

__all__ = ["activated_environ", "local_prefix", "run_command", "run_in_prefix"]

# Variables that would make the environment's interpreter load the caller's Python instead.
_UNSET = ("PYTHONHOME", "PYTHONPATH", "__PYVENV_LAUNCHER__")


def local_prefix(build: Mapping[str, Any]) -> Path:
    """The build's prefix if it is usable on this host, else a readable error."""
    build_id = build.get("id")
    status = build.get("status")
    if status != BuildStatus.COMPLETED:
        raise Conflict(f"build {build_id} is {status}; only a COMPLETED build can run commands")
    prefix = build.get("prefix")
    if not isinstance(prefix, str) or not prefix or not Path(prefix).is_dir():
        raise InvalidInput(
            f"build {build_id} is not on this host; downloading it needs the archive artifact"
        )
    return Path(prefix)


def _spec_variables(build: Mapping[str, Any]) -> dict[str, str]:
    """The ``variables:`` of the build's specification (``specification.spec`` is an object)."""
    specification = build.get("specification")
    spec = specification.get("spec") if isinstance(specification, Mapping) else None
    variables = spec.get("variables") if isinstance(spec, Mapping) else None
    if not isinstance(variables, Mapping):
        return {}
    return {str(key): str(value) for key, value in variables.items()}


def activated_environ(
    prefix: Path, build: Mapping[str, Any], base: Mapping[str, str]
) -> dict[str, str]:
    """``base`` with the environment activated; spec variables win over inherited ones."""
    environ = {key: value for key, value in base.items() if key not in _UNSET}
    bin_dir = str(prefix / "bin")
    inherited = base.get("PATH", os.defpath)
    environ["PATH"] = f"{bin_dir}{os.pathsep}{inherited}" if inherited else bin_dir
    environ["CONDA_PREFIX"] = str(prefix)
    environ["VIRTUAL_ENV"] = str(prefix)
    environ.update(_spec_variables(build))
    return environ


def run_in_prefix(prefix: Path, build: Mapping[str, Any], command: Sequence[str]) -> int:
    """Run ``command`` activated in ``prefix``; return its exit code as a shell would.

    A child killed by a signal gives ``128 + signal`` (what ``sh`` reports). Ctrl-C reaches the
    child through the terminal's process group, so the CLI only waits for it to finish.
    """
    environ = activated_environ(prefix, build, os.environ)
    try:
        process = subprocess.Popen(list(command), env=environ)
    except FileNotFoundError:
        raise InvalidInput(f"{command[0]}: command not found in {prefix / 'bin'} or PATH") from None
    except PermissionError:
        raise InvalidInput(f"{command[0]}: permission denied") from None
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue
    return 128 - code if code < 0 else code


def run_command(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="NS/NAME[@BUILD|@DATE]")],
    command: Annotated[list[str], typer.Argument(metavar="-- CMD...", help="Command to run.")],
) -> None:
    """Run CMD inside the environment's current build (or the build a reference names)."""
    env_ref, selector = parse_selector_ref(ref)
    # Option parsing stops at the reference, so an explicit `--` arrives as part of CMD.
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise InvalidInput("no command given; usage: envstore run NS/NAME -- CMD...")
    with open_client(ctx) as client:
        build = client.resolve(env_ref.namespace, env_ref.name, selector)
    prefix = local_prefix(build)
    raise typer.Exit(run_in_prefix(prefix, build, command))

"""How the CLI shows things: rich tables for people, raw JSON for scripts, one-line errors.

Results go to stdout and diagnostics (errors, progress) to stderr, so ``envstore ... --json |
jq`` and ``envstore lockfile NS/NAME > lock.yml`` keep working while a live status is shown.
Every function here is pure formatting over the JSON the server returned; nothing calls HTTP.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "build_rows",
    "build_summary",
    "environment_rows",
    "environment_summary",
    "err_console",
    "one_line",
    "out_console",
    "print_error",
    "print_json",
    "print_pairs",
    "print_table",
    "status_line",
]

_NONE = "-"
# Piped output has no terminal width; rich would assume 80 and cut paths and dates.
_PIPE_WIDTH = 500


def out_console() -> Console:
    """The console for results (stdout), created at call time so tests can capture it."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else _PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def err_console() -> Console:
    """The console for diagnostics and live status (stderr)."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def one_line(text: object) -> str:
    """Flatten any value to a single line: status_info and server messages can hold newlines."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = json.dumps(text, sort_keys=True) if isinstance(text, dict | list) else str(text)
    return " ".join(text.split())


def print_error(message: str) -> None:
    """Print ``envstore: error: <message>`` on one stderr line, with no rich markup applied."""
    sys.stderr.write(f"envstore: error: {one_line(message)}\n")
    sys.stderr.flush()


def print_json(data: Any) -> None:
    """Print the server's data exactly, for scripts (no colours, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str) -> None:
    """A rich table on stdout, or the ``empty`` sentence when there are no rows."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
        count += 1
    console = out_console()
    if count == 0:
        console.print(Text(empty))
    else:
        console.print(table)


def print_pairs(pairs: Sequence[tuple[str, str]]) -> None:
    """A two-column ``field  value`` listing for one object."""
    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), Text(value))
    out_console().print(table)


def status_line(build: Mapping[str, Any]) -> str:
    """``build 7 FAILED: solve_failed: no version of foo`` - the one line a wait ends with."""
    status = str(build.get("status") or "UNKNOWN")
    info = one_line(build.get("status_info"))
    head = f"build {build.get('id')} {status}"
    return f"{head}: {info}" if info else head


def _text(value: Any) -> str:
    if value is None or value == "":
        return _NONE
    return one_line(value)


def _when(value: Any) -> str:
    """``2025-03-01T04:05:06.123456`` as ``2025-03-01 04:05:06``: tables need the width."""
    if not isinstance(value, str) or not value:
        return _NONE
    return value[:19].replace("T", " ")


def _env_label(build: Mapping[str, Any]) -> str:
    env = build.get("environment")
    if isinstance(env, Mapping) and env.get("namespace") and env.get("name"):
        return f"{env['namespace']}/{env['name']}"
    return f"environment {build.get('environment_id', '?')}"


def _namespace_name(env: Mapping[str, Any]) -> str:
    namespace = env.get("namespace")
    if isinstance(namespace, Mapping):
        namespace = namespace.get("name")
    return f"{namespace}/{env.get('name')}"


def environment_rows(envs: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """Rows for ``env list``: reference, current build and its state, description."""
    rows = []
    for env in envs:
        current = env.get("current_build")
        status = current.get("status") if isinstance(current, Mapping) else None
        rows.append(
            [
                _namespace_name(env),
                _text(env.get("current_build_id")),
                _text(status),
                _text(env.get("description")),
            ]
        )
    return rows


def build_rows(
    builds: Iterable[Mapping[str, Any]], current: Collection[Any] = ()
) -> list[list[str]]:
    """Rows for ``build list``; ``*`` marks the builds in ``current`` (ids)."""
    return [
        [
            "*" if build.get("id") in current else "",
            str(build.get("id")),
            _env_label(build),
            _text(build.get("status")),
            _when(build.get("scheduled_on")),
            _when(build.get("ended_on")),
            _text(build.get("status_info")),
        ]
        for build in builds
    ]


def build_summary(
    build: Mapping[str, Any], *, packages: int | None = None, current: bool | None = None
) -> list[tuple[str, str]]:
    """Field/value pairs for ``build show`` and for the build part of ``env show``.

    The build JSON has neither its package count (``GET /build/{id}/packages/`` counts them)
    nor whether it is current (its environment says): callers that know pass them.
    """
    artifacts = build.get("build_artifacts") or []
    kinds = sorted({str(a.get("artifact_type")) for a in artifacts if isinstance(a, Mapping)})
    return [
        ("build", str(build.get("id"))),
        ("environment", _env_label(build)),
        ("status", _text(build.get("status"))),
        ("current", _NONE if current is None else ("yes" if current else "no")),
        ("status info", _text(build.get("status_info"))),
        ("build key", _text(build.get("build_key"))),
        ("attempt", _text(build.get("attempt"))),
        ("as of", _text(build.get("as_of"))),
        ("scheduled", _text(build.get("scheduled_on"))),
        ("started", _text(build.get("started_on"))),
        ("ended", _text(build.get("ended_on"))),
        ("size", _text(build.get("size"))),
        ("packages", _text(packages)),
        ("prefix", _text(build.get("prefix"))),
        ("artifacts", ", ".join(kinds) or _NONE),
        ("archive and image", _artifacts_state(build)),
    ]


def _artifacts_state(build: Mapping[str, Any]) -> str:
    status = build.get("artifacts_status")
    if not status:
        return _NONE
    info = build.get("artifacts_status_info")
    return f"{status} ({info})" if info else str(status)


def environment_summary(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Field/value pairs for ``env show`` without a build selector."""
    return [
        ("environment", _namespace_name(env)),
        ("id", _text(env.get("id"))),
        ("description", _text(env.get("description"))),
        ("current build", _text(env.get("current_build_id"))),
    ]

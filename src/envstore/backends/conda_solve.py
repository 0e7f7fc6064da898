"""Solve-only child process for ``GET /specification/``: ``python -m envstore.backends.conda_solve``.

The API must never solve in its own process (a solve can take long, or hang on a channel), so
:mod:`envstore.services.solve` starts this module in its own process group, writes one JSON
query on stdin (credentials included, so they never touch the disk or the command line) and
kills the group at the deadline. The answer is one JSON object on stdout: either
``{"packages": [...]}`` or ``{"reason": ..., "message": ...}``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

from envstore.errors import BuildFailure, InvalidSpec

__all__ = ["main", "solve_query"]


def solve_query(query: dict[str, Any]) -> list[dict[str, Any]]:
    """Solve the conda specs (then the pip ones, against the host interpreter) of ``query``.

    A PyPI-only query (``kind: pypi``) needs no channel: its pip requirements are resolved for
    the host interpreter matching its ``python`` request, as a build of it would be.
    """
    from envstore.backends import conda, interpreters

    if query.get("kind") == "pypi":
        python, _version = interpreters.find_interpreter(
            query["python"], cache_file=query.get("interpreter_cache")
        )
        return _pip_rows(query, python) if query.get("pip") else []
    rows = conda.solve_only(
        query["channels"],
        query["conda"],
        query.get("platform"),
        cache_dir=query["cache_dir"],
        channel_alias=query["channel_alias"],
        as_of=query.get("as_of"),
        timeout=float(query["timeout"]),
        virtual_packages=query.get("virtual_packages") or {},
        credentials=query.get("credentials") or {},
    )
    for row in rows:
        row["manager"] = "conda"
    if query.get("pip"):
        rows += _pip_rows(query, sys.executable)
    return rows


def _pip_rows(query: dict[str, Any], python: str) -> list[dict[str, Any]]:
    """The ``pip:`` part, resolved by uv for ``python`` (nothing is installed)."""
    from envstore.backends import conda, pypi

    index = query.get("pypi_index_url") or "https://pypi.org/simple"
    with tempfile.TemporaryDirectory(prefix="envstore-solve-") as work:
        locked = pypi.resolve(
            list(query["pip"]),
            python,
            as_of=query.get("as_of"),
            index_url=query.get("pypi_index_url"),
            cache_dir=query["uv_cache_dir"],
            requested=frozenset(),
            platform=query.get("platform") or conda.host_platform(),
            log=lambda _line: None,
            timeout=float(query["timeout"]),
            work_dir=work,
        )
    return [
        {
            "name": p.name,
            "version": p.version,
            "build": "",
            "channel": index,
            "url": p.url,
            "size": 0,
            "manager": "pip",
        }
        for p in sorted(locked, key=lambda p: p.name)
    ]


def main() -> int:
    try:
        query = json.loads(sys.stdin.read())
        answer: dict[str, Any] = {"packages": solve_query(query)}
    except BuildFailure as exc:
        answer = {"reason": exc.reason, "message": exc.message}
    except InvalidSpec as exc:
        answer = {"reason": "invalid_spec", "message": exc.message}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

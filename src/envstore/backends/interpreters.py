"""Finding the build host's Python interpreters for PyPI builds (uv's discovery, cached).

Only system interpreters are used and nothing is downloaded: a build runs on an interpreter the
operator installed. Discovery costs uv about 0.15 s, so answers are cached for a few minutes
in a small JSON file beside the uv cache, each checked against the interpreter file's identity.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from envstore.backends.pypi import Log, uv_bin, uv_environment
from envstore.errors import BuildFailure

__all__ = ["available_pythons", "find_interpreter"]


def find_interpreter(
    request: str, *, log: Log | None = None, cache_file: str | Path | None = None
) -> tuple[str, str]:
    """Return (path, version) of a Python on the build host matching ``request``.

    Only system interpreters are considered and nothing is downloaded: a build must use an
    interpreter the operator installed. Raises ``interpreter_not_found`` otherwise.
    Discovery costs uv about 0.15 s per build, so answers are kept in ``cache_file`` for a few
    minutes, each checked against the interpreter file's identity before it is used.
    """
    cached = _cached_interpreter(cache_file, request)
    if cached is None:
        cached = _discover_interpreter(request)
        _remember_interpreter(cache_file, request, cached)
    executable, version = cached
    if log:
        log(f"using Python {version} at {executable}")
    return executable, version


_INTERPRETER_TTL = 300.0


def _identity(path: str) -> list[float]:
    info = Path(path).stat()
    return [info.st_ino, info.st_size, info.st_mtime]


def _cached_interpreter(cache_file: str | Path | None, request: str) -> tuple[str, str] | None:
    if cache_file is None:
        return None
    try:
        entry = json.loads(Path(cache_file).read_text()).get(request)
        fresh = entry and time.time() - entry["at"] < _INTERPRETER_TTL
        if fresh and _identity(entry["path"]) == entry["identity"]:
            return str(entry["path"]), str(entry["version"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def _remember_interpreter(
    cache_file: str | Path | None, request: str, found: tuple[str, str]
) -> None:
    if cache_file is None:
        return
    path = Path(cache_file)
    try:
        entries = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[request] = {
        "path": found[0],
        "version": found[1],
        "identity": _identity(found[0]),
        "at": time.time(),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(entries))
        temporary.replace(path)  # atomic: concurrent builds never read half a file
    except OSError:
        pass  # a cache that cannot be written only costs time


def _discover_interpreter(request: str) -> tuple[str, str]:
    cmd = [uv_bin(), "python", "find", "--system", "--no-project", "--no-config"]
    cmd += ["--python-preference", "only-system", "--color", "never", request]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=uv_environment(), check=False)
    path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not path:
        available = ", ".join(available_pythons()) or "none"
        raise BuildFailure(
            "interpreter_not_found",
            f"no Python matching {request!r} on the build host; available: {available}",
        )
    probe = subprocess.run(
        [
            path,
            "-I",
            "-c",
            "import platform, sys; print(platform.python_version()); print(sys.executable)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise BuildFailure(
            "interpreter_not_found", f"Python at {path} does not run: {probe.stderr.strip()}"
        )
    version, executable = probe.stdout.split()[:2]
    return executable, version


def available_pythons() -> list[str]:
    """Distinct versions of the system interpreters uv can see, for error messages."""
    cmd = [uv_bin(), "python", "list", "--only-installed", "--python-preference", "only-system"]
    cmd += ["--no-config", "--output-format", "json", "--color", "never"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=uv_environment(), check=False)
    try:
        entries = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return []
    versions = {str(entry.get("version")) for entry in entries if isinstance(entry, dict)}
    return sorted(versions, key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))

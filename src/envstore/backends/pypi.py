"""The PyPI backend: uv finds the interpreter, resolves (``uv pip compile``) and installs.

Used by the pipeline for PyPI environments, and by the conda backend for the ``pip:`` section
of a conda environment (installing into the conda prefix's own ``python``). Every uv call runs
with ``--no-config`` and a scrubbed environment, so that a host's ``uv.toml`` or ``UV_*``
variables can never change what a build resolves to; uv's output streams into the build log
line by line while it runs.

Resolution writes ``pylock.toml`` for one concrete interpreter, so uv lists only the wheels
compatible with it; we still rank them by the interpreter's tag priority, because several can
be compatible at once (``cp311-manylinux`` and ``py3-none-any`` of the same release).
"""

from __future__ import annotations

import os
import platform as _platform
import subprocess
import sys
import threading
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.tags import Tag, compatible_tags, cpython_tags, platform_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from envstore.backends.uv_hints import as_of_hints, in_envstore_terms
from envstore.core.lockfile import LockedPackage
from envstore.core.policy import pip_constraints
from envstore.core.policy_settings import EffectivePolicy
from envstore.errors import BuildFailure
from envstore.pipeline.contract import BuildRequest

__all__ = [
    "DEFAULT_INDEX_URL",
    "Log",
    "classify_uv_failure",
    "create_venv",
    "host_platform",
    "install",
    "parse_pylock",
    "requirement_edges",
    "resolve",
    "resolve_for_request",
    "stream_command",
    "uv_bin",
    "uv_environment",
]

Log = Callable[[str], None]
DEFAULT_INDEX_URL = "https://pypi.org/simple"

# Lines of uv output kept for error messages; the whole output is already in the build log.
_TAIL_LINES = 400
_NETWORK_MARKERS = (
    "failed to fetch",
    "error sending request",
    "request failed after",
    "dns error",
    "connection refused",
    "connection reset",
    "operation timed out",
    "tcp connect error",
    "network unreachable",
)
_NO_SPACE_MARKERS = ("no space left on device", "os error 28", "disk quota exceeded")
# Host variables that would make uv pick another interpreter or change the resolution.
_SCRUBBED_VARS = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME", "PIP_INDEX_URL")


def uv_bin() -> str:
    """The pinned uv binary shipped with the ``uv`` wheel, never whatever is on ``PATH``."""
    from uv import find_uv_bin  # the wheel's helper; untyped module

    return str(find_uv_bin())


def host_platform() -> str:
    """The conda-style subdir of this host (``linux-64``, ``linux-aarch64``, ``osx-arm64``...)."""
    machine = _platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "arm64": "arm64", "aarch64": "aarch64"}.get(
        machine, machine
    )
    if sys.platform == "darwin":
        return f"osx-{'arm64' if arch in ('arm64', 'aarch64') else arch}"
    if sys.platform == "win32":
        return f"win-{'arm64' if arch in ('arm64', 'aarch64') else arch}"
    return f"linux-{'aarch64' if arch == 'arm64' else arch}"


def uv_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for uv: the host's minus anything that would steer a build."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("UV_") and key not in _SCRUBBED_VARS
    }
    env.update({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "NO_COLOR": "1"})
    env.update(extra or {})
    return env


def stream_command(
    cmd: list[str],
    log: Log,
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> tuple[int, str]:
    """Run ``cmd``, forwarding each output line to ``log`` as it comes; return (code, tail).

    stderr is merged into stdout so the log keeps uv's order. The child stays in our process
    group, so a cancel that kills the runner's group kills it too. On ``timeout`` it is killed
    and :class:`TimeoutError` is raised. ``tail`` is the last lines, for error messages.
    """
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else uv_environment(),
        cwd=cwd,
        text=True,
        errors="replace",
        bufsize=1,
    )
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, _kill) if timeout else None
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        if timer:
            timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(line)
        code = proc.wait()
    finally:
        if timer:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if timed_out.is_set():
        raise TimeoutError(f"{Path(cmd[0]).name} {cmd[1:3]} did not finish within {timeout:.0f}s")
    return code, "\n".join(tail)


def classify_uv_failure(output: str, *, default_reason: str) -> BuildFailure:
    """Turn a failed uv run's output into a :class:`BuildFailure` with a stable reason."""
    lowered = output.lower()
    message = _trim_uv_message(output)
    if any(marker in lowered for marker in _NO_SPACE_MARKERS):
        # The disk is a host condition, not a property of the spec: a later attempt may succeed.
        return BuildFailure("no_space", message, retryable=True)
    if "hash mismatch" in lowered:
        return BuildFailure("hash_mismatch", message, retryable=False)
    if "no solution found" in lowered:
        return BuildFailure("solve_failed", message, retryable=False)
    if any(marker in lowered for marker in _NETWORK_MARKERS):
        return BuildFailure("network_error", message, retryable=True)
    return BuildFailure(default_reason, message, retryable=False)


def _trim_uv_message(output: str, limit: int = 2000) -> str:
    """uv's explanation from its first ``error:`` line on, without progress noise or hints."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), 0)
    kept = [line.removeprefix("error: ") for line in lines[start:] if line.strip()]
    kept = [line for line in kept if not line.lstrip().startswith("hint:")]
    text = "\n".join(kept).strip() or "uv failed without output"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exclude_newer(as_of: str) -> str:
    """``as_of`` (ISO, naive means UTC) in the RFC 3339 form uv expects."""
    moment = datetime.fromisoformat(as_of)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve(
    requirements: list[str],
    python: str,
    *,
    as_of: str | None,
    index_url: str | None,
    cache_dir: str,
    requested: frozenset[str],
    platform: str,
    log: Log,
    timeout: float,
    work_dir: str | Path,
    python_version: str | None = None,
    constraints: Sequence[str] = (),
) -> list[LockedPackage]:
    """Resolve ``requirements`` for the interpreter ``python``; one pinned artifact per package.

    ``requested`` holds canonical names the user asked for (the rest are dependencies);
    ``constraints`` (policy pins) bound versions wherever a package appears. Raises
    ``solve_failed``, ``solve_timeout``, ``network_error`` (retryable) or ``no_space``.
    """
    output = Path(work_dir) / "pylock.toml"
    # uv reads an existing output file as preferences; a stale one must not steer this solve.
    output.unlink(missing_ok=True)
    cmd = _compile_command(requirements, python, work_dir, cache_dir, as_of, index_url, constraints)
    # -q: uv would also echo the whole pylock.toml into the log; errors still print.
    cmd += ["--format", "pylock.toml", "-q", "-o", str(output)]
    try:
        # uv's as-of hints name an option users cannot set: the log gets them reworded.
        code, tail = stream_command(
            cmd, lambda line: log(in_envstore_terms(line)), timeout=timeout, cwd=work_dir
        )
    except TimeoutError as exc:
        raise BuildFailure(
            "solve_timeout", f"the solve took longer than {timeout:.0f}s: {exc}"
        ) from None
    if code != 0:
        failure = classify_uv_failure(tail, default_reason="solve_failed")
        hints = as_of_hints(tail)
        if hints:  # which pin conflicts with the as-of date belongs in status_info too
            message = "\n".join([failure.message, *hints])
            raise BuildFailure(failure.reason, message, retryable=failure.retryable)
        raise failure
    version = python_version or _python_version(python)
    return parse_pylock(
        output.read_text(), python_version=version, requested=requested, platform=platform
    )


def _compile_command(
    requirements: Sequence[str],
    python: str,
    work_dir: str | Path,
    cache_dir: str,
    as_of: str | None,
    index_url: str | None,
    constraints: Sequence[str],
) -> list[str]:
    """``uv pip compile`` of ``requirements`` (and ``constraints``) for ``python``, without an
    output format: the resolve and the dependency query share everything else."""
    requirements_file = Path(work_dir) / "requirements.in"
    requirements_file.write_text("".join(f"{req}\n" for req in requirements))
    cmd = [uv_bin(), "pip", "compile", str(requirements_file), "--python", python]
    cmd += ["--no-header", "--no-config", "--color", "never", "--cache-dir", cache_dir]
    if constraints:
        constraints_file = Path(work_dir) / "constraints.txt"
        constraints_file.write_text("".join(f"{line}\n" for line in constraints))
        cmd += ["--constraint", str(constraints_file)]
    if as_of:
        cmd += ["--exclude-newer", exclude_newer(as_of)]
    if index_url:
        cmd += ["--index-url", index_url]
    return cmd


def requirement_edges(
    request: BuildRequest, requirements: Sequence[str], python: str, log: Log
) -> dict[str, list[str]]:
    """Which resolved package requires which (parent → names), from uv's annotations.

    ``pylock.toml`` does not carry dependencies, so when the policy refuses a PyPI package the
    same resolve runs once more in ``requirements.txt`` form, whose ``# via`` comments name
    each package's dependants (the cache is warm: no download)."""
    cmd = _compile_command(
        requirements,
        python,
        request.work_dir,
        request.uv_cache_dir,
        request.as_of,
        request.pypi_index_url,
        pip_constraints(EffectivePolicy.from_json(request.policy)),
    )
    output = Path(request.work_dir) / "requirements.annotated.txt"
    cmd += ["--annotation-style", "split", "-q", "-o", str(output)]
    code, tail = stream_command(cmd, log, timeout=request.solve_timeout, cwd=request.work_dir)
    if code != 0:
        raise classify_uv_failure(tail, default_reason="solve_failed")
    return parse_annotations(output.read_text())


def parse_annotations(text: str) -> dict[str, list[str]]:
    """``parent -> [children]`` from ``uv pip compile`` output with ``# via`` comments."""
    edges: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("#"):
            name = line.split("==", 1)[0].split("[", 1)[0].strip()
            current = str(canonicalize_name(name)) if name and "==" in line else None
            continue
        parent = line.lstrip("#").strip().removeprefix("via").strip()
        if current is None or not parent or parent.startswith(("-r", "-c", "(")):
            continue
        edges.setdefault(str(canonicalize_name(parent.split()[0])), []).append(current)
    return edges


def resolve_for_request(
    request: BuildRequest,
    requirements: list[str],
    python: str,
    *,
    requested: frozenset[str],
    platform: str,
    log: Log,
    python_version: str | None = None,
) -> list[LockedPackage]:
    """:func:`resolve` with the index, cache, as-of date, timeout and scratch directory of a
    build request: the PyPI builds and the ``pip:`` section of conda builds resolve alike."""
    return resolve(
        requirements,
        python,
        as_of=request.as_of,
        index_url=request.pypi_index_url,
        cache_dir=request.uv_cache_dir,
        requested=requested,
        platform=platform,
        log=log,
        timeout=request.solve_timeout,
        work_dir=request.work_dir,
        python_version=python_version,
        constraints=pip_constraints(EffectivePolicy.from_json(request.policy)),
    )


def _python_version(python: str) -> str:
    probe = subprocess.run(
        [python, "-I", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return probe.stdout.strip()


def parse_pylock(
    text: str, *, python_version: str, requested: frozenset[str], platform: str
) -> list[LockedPackage]:
    """For each package of a ``pylock.toml``: its best wheel for the interpreter, else its sdist."""
    data = tomllib.loads(text)
    ranking = _tag_ranking(python_version)
    packages: list[LockedPackage] = []
    for entry in data.get("packages", []):
        name = str(entry["name"])
        artifact = _best_wheel(entry.get("wheels") or [], ranking) or entry.get("sdist")
        if not artifact or "url" not in artifact:
            raise BuildFailure("solve_failed", f"the index offers no installable file for {name}")
        sha256 = str((artifact.get("hashes") or {}).get("sha256") or "")
        if len(sha256) != 64:
            raise BuildFailure("solve_failed", f"the index gives no sha256 for {artifact['url']}")
        packages.append(
            LockedPackage(
                name=name,
                version=str(entry["version"]),
                manager="pip",
                platform=platform,
                url=str(artifact["url"]),
                sha256=sha256,
                requested=canonicalize_name(name) in requested,
            )
        )
    return packages


def _tag_ranking(python_version: str) -> dict[Tag, int]:
    """Tag → priority (lower is better) for a CPython of this version on this host."""
    major, minor = (int(part) for part in python_version.split(".")[:2])
    abi = f"cp{major}{minor}"
    platforms = list(platform_tags())
    tags = list(cpython_tags((major, minor), [abi], platforms))
    tags += list(compatible_tags((major, minor), abi, platforms))
    return {tag: index for index, tag in enumerate(tags)}


def _best_wheel(wheels: list[dict[str, Any]], ranking: dict[Tag, int]) -> dict[str, Any] | None:
    """The wheel whose best tag ranks highest; uv's first wheel if none is known to us."""
    best: tuple[int, dict[str, Any]] | None = None
    for wheel in wheels:
        filename = unquote(urlsplit(str(wheel.get("url", ""))).path.rsplit("/", 1)[-1])
        try:
            tags = parse_wheel_filename(str(wheel.get("name") or filename))[3]
        except InvalidWheelFilename:
            continue
        rank = min((ranking[tag] for tag in tags if tag in ranking), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, wheel)
    if best is not None:
        return best[1]
    return wheels[0] if wheels else None


def create_venv(prefix: str | Path, python: str, *, log: Log, cache_dir: str) -> str:
    """Create a virtual environment at ``prefix`` (which must not exist); return its python."""
    if Path(prefix).exists():
        raise BuildFailure(
            "prefix_exists", f"{prefix} exists already; a build never reuses a prefix"
        )
    cmd = [uv_bin(), "venv", str(prefix), "--python", python, "--no-project", "--no-config"]
    cmd += ["--color", "never", "--cache-dir", cache_dir]
    code, tail = stream_command(cmd, log)
    if code != 0:
        raise classify_uv_failure(tail, default_reason="install_failed")
    return str(Path(prefix) / "bin" / "python")


def install(
    packages: Iterable[LockedPackage],
    python: str,
    *,
    cache_dir: str,
    log: Log,
    work_dir: str | Path,
    index_url: str | None = None,
    timeout: float | None = None,
) -> None:
    """Install exactly ``packages`` (by URL, hash-checked) into the environment of ``python``.

    ``uv pip sync`` removes anything not listed, so the result is the lock and nothing else.
    ``index_url`` only serves build dependencies of sdists. Raises ``hash_mismatch``,
    ``no_space``, ``network_error`` or ``install_failed``.
    """
    lines = [
        f"{p.name} @ {p.url} --hash=sha256:{p.sha256}\n" for p in packages if p.manager == "pip"
    ]
    requirements = Path(work_dir) / "requirements.lock.txt"
    requirements.write_text("".join(sorted(lines)))
    cmd = [uv_bin(), "pip", "sync", str(requirements), "--require-hashes", "--python", python]
    cmd += ["--cache-dir", cache_dir, "--link-mode", "hardlink", "--no-config", "--color", "never"]
    if index_url:
        cmd += ["--index-url", index_url]
    # Right after a solve the wheels are usually in the cache already: an offline attempt skips
    # uv's revalidation round trips (~0.15 s). Its output is kept only if it succeeds.
    offline: list[str] = []
    if stream_command([*cmd, "--offline"], offline.append, timeout=timeout, cwd=work_dir)[0] == 0:
        for line in offline:
            log(line)
        return
    try:
        code, tail = stream_command(cmd, log, timeout=timeout, cwd=work_dir)
    except TimeoutError as exc:
        raise BuildFailure("timeout", str(exc), retryable=True) from None
    if code != 0:
        raise classify_uv_failure(tail, default_reason="install_failed")

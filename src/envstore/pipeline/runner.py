"""The child process that runs builds: ``python -m envstore.pipeline.runner REQUEST|-``.

For each build it reads a :class:`BuildRequest`, runs the stages for the request's kind, prints
its log on stdout line by line (the parent streams it into the build log) and leaves exactly
one of ``result.json`` or ``failure.json`` in ``work_dir``. With a path it runs that one build
(exit code 0 on success, 1 on failure); with ``-`` it serves a worker, one build after another
(see :func:`serve`). It never touches the database. On failure it removes the prefix it created, so no
half-installed environment remains; a prefix that existed before it started is never touched.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from envstore.backends import pypi
from envstore.core.specs import EnvironmentSpec, parse_specification
from envstore.errors import BuildFailure, InvalidSpec
from envstore.pipeline.contract import (
    FAILURE_FILE,
    RESULT_FILE,
    BuildFailureInfo,
    BuildRequest,
    BuildResult,
    PackRequest,
    PackResult,
    end_line,
    is_pack_request,
)
from envstore.pipeline.install import install_pypi
from envstore.pipeline.lock import lock_pypi
from envstore.pipeline.policy_gate import gate_for
from envstore.pipeline.solve import solve_pypi, solved_for_policy

__all__ = ["build_pypi", "log_line", "main", "run_one", "run_pack", "serve", "stage"]

Log = Callable[[str], None]


def log_line(line: str) -> None:
    """Print one log line and flush it, so the parent sees it while the build runs."""
    print(line, flush=True)


@contextmanager
def stage(name: str, log: Log) -> Iterator[None]:
    """Frame a stage in the log with a header and its duration, even when it fails."""
    log(f"== {name}")
    start = time.monotonic()
    outcome = "failed"
    try:
        yield
        outcome = "done"
    finally:
        log(f"== {name} {outcome} in {time.monotonic() - start:.2f}s")


def build_pypi(request: BuildRequest, log: Log) -> BuildResult:
    """Solve (or adopt the lockfile), install into a new venv, then lock and record."""
    spec = request_spec(request)
    if spec.kind != "pypi":
        raise BuildFailure("invalid_spec", "the spec has conda packages; it is not a PyPI build")
    with stage("solve", log):
        solved = solve_pypi(request, spec, log)
        gate_for(request, log)(
            solved_for_policy(solved),
            lambda: pypi.requirement_edges(request, list(spec.pip), solved.python, log),
        )
    with stage("install", log):
        installed, size = install_pypi(solved, request, log)
    with stage("lock", log):
        result = lock_pypi(solved, installed, spec, request, size)
    log(f"{len(result.packages)} package(s), {result.size / 1e6:.1f} MB on disk")
    return result


def request_spec(request: BuildRequest) -> EnvironmentSpec:
    """The request's spec, validated again: the child trusts nothing it did not parse."""
    if request.lockfile is not None and "lockfile" in request.spec:
        # A submitted lockfile's spec is {name, lockfile}: the lockfile says what to install.
        return EnvironmentSpec(name=request.spec.get("name"))
    try:
        return parse_specification(yaml.safe_dump(request.spec))
    except InvalidSpec as exc:
        raise BuildFailure("invalid_spec", exc.message) from None


def _conda_backend() -> Any:
    """The conda backend module, or None when this installation has none (no py-rattler)."""
    try:
        return importlib.import_module("envstore.backends.conda")
    except ModuleNotFoundError as exc:
        if exc.name not in ("envstore.backends.conda", "rattler"):
            raise
        return None


def _dispatch(request: BuildRequest, log: Log) -> BuildResult:
    if request.kind == "pypi":
        return build_pypi(request, log)
    if request.kind == "conda":
        conda = _conda_backend()
        if conda is None:
            raise BuildFailure("unsupported", "this server has no conda backend")
        result: BuildResult = conda.build(request, log, gate=gate_for(request, log))
        return result
    raise BuildFailure("unsupported", f"unknown environment kind {request.kind!r}")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn a cancel or timeout kill into an exception, so the prefix is cleaned up on the way out.
    raise BuildFailure("terminated", "the build process received SIGTERM", retryable=True)


def run(request: BuildRequest, log: Log) -> BuildResult | BuildFailureInfo:
    """Run one build; return its result, or the failure after removing the prefix."""
    prefix = Path(request.prefix)
    if prefix.exists() or prefix.is_symlink():
        return BuildFailureInfo("prefix_exists", f"{prefix} exists already; refusing to reuse it")
    try:
        return _dispatch(request, log)
    except BuildFailure as exc:
        info = BuildFailureInfo(exc.reason, exc.message, exc.retryable)
    except OSError as exc:
        log(traceback.format_exc().rstrip())
        reason = "no_space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "internal_error"
        info = BuildFailureInfo(reason, f"{type(exc).__name__}: {exc}", reason == "no_space")
    except Exception as exc:
        log(traceback.format_exc().rstrip())
        info = BuildFailureInfo("internal_error", f"{type(exc).__name__}: {exc}")
    log(f"build failed ({info.reason}): {info.message}")
    _remove_prefix(prefix, log)
    return info


def _remove_prefix(prefix: Path, log: Log) -> None:
    if prefix.is_symlink():
        prefix.unlink()
    elif prefix.exists():
        log(f"removing the partial environment at {prefix}")
        shutil.rmtree(prefix)


Outcome = BuildResult | PackResult | BuildFailureInfo


def _write(outcome: Outcome, work_dir: Path) -> None:
    """Write result or failure atomically, so the parent never reads half a file."""
    name = FAILURE_FILE if isinstance(outcome, BuildFailureInfo) else RESULT_FILE
    temporary = work_dir / f".{name}.tmp"
    outcome.write(temporary)
    temporary.replace(work_dir / name)


def _die_with_parent(interval: float = 0.5) -> None:
    """Kill this build's process group when the supervising worker dies.

    The runner lives in its own session (so that cancel can kill its tree), which also means
    a ``kill -9`` of the worker would orphan it; an orphan would keep writing into a prefix
    that the requeued attempt is about to rebuild (W1).
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


# Failures after which a serving runner exits instead of taking the next build: its own bug
# (whatever state it left must not reach another build), or a SIGTERM (cancel, timeout).
_LEAVE_AFTER = ("internal_error", "terminated")


def run_pack(request_path: Path) -> PackResult | BuildFailureInfo:
    """Pack the build that ``request_path`` names into its archive and image files."""
    try:
        request = PackRequest.read(request_path)
    except (OSError, ValueError, TypeError) as exc:
        info = BuildFailureInfo("internal_error", f"cannot read the pack request: {exc}")
        log_line(info.message)
        _write(info, request_path.parent)
        return info
    os.chdir(request.work_dir)
    outcome: PackResult | BuildFailureInfo
    try:
        # imported here (or by serve() after a build): a runner's start-up, which a build may
        # wait for, does not pay for it
        from envstore.artifacts.stage import produce_artifacts

        with stage("artifacts", log_line):
            files = produce_artifacts(
                Path(request.prefix),
                Path(request.work_dir),
                request.kinds,
                variables=request.variables,
                image_prefix=request.oci_prefix,
                base_layer=request.oci_base_layer,
                layer_compression=request.layer_compression,
                zstd_level=request.zstd_level,
                log=log_line,
            )
        outcome = PackResult(files)
    except BuildFailure as exc:
        outcome = BuildFailureInfo(exc.reason, exc.message, exc.retryable)
    except OSError as exc:
        reason = "no_space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "pack_failed"
        outcome = BuildFailureInfo(reason, f"{type(exc).__name__}: {exc}", reason == "no_space")
    except Exception as exc:
        log_line(traceback.format_exc().rstrip())
        outcome = BuildFailureInfo("internal_error", f"{type(exc).__name__}: {exc}")
    if isinstance(outcome, BuildFailureInfo):
        log_line(f"packing failed ({outcome.reason}): {outcome.message}")
    _write(outcome, Path(request.work_dir))
    return outcome


def run_one(request_path: Path) -> Outcome:
    """Run the build (or pack job) that ``request_path`` describes; its log goes to stdout."""
    if is_pack_request(request_path):
        return run_pack(request_path)
    try:
        request = BuildRequest.read(request_path)
    except (OSError, ValueError, TypeError) as exc:
        info = BuildFailureInfo("internal_error", f"cannot read the build request: {exc}")
        log_line(info.message)
        _write(info, request_path.parent)
        return info
    os.chdir(request.work_dir)  # also how tools find this build's runner: /proc/PID/cwd
    log_line(f"build {request.build_id} ({request.kind}) → {request.prefix}")
    start = time.monotonic()
    outcome = run(request, log_line)
    _write(outcome, Path(request.work_dir))
    status = "failed" if isinstance(outcome, BuildFailureInfo) else "succeeded"
    log_line(f"== build {status} in {time.monotonic() - start:.2f}s")
    return outcome


def serve(requests: io.TextIOBase) -> int:
    """Run builds one after another, as the worker sends them, until ``requests`` ends.

    The interpreter, the imports and what the backends cache (interpreter discovery, rattler's
    runtime) are then paid once per runner rather than once per build. After a build that
    failed for a reason of its own (``internal_error``) or was terminated the runner leaves,
    so that whatever state that left behind does not reach the next build.
    """
    _conda_backend()  # py-rattler's import (~0.09 s) is paid here, while no build waits
    home = Path.cwd()
    while line := requests.readline():
        nonce, _, path = line.strip().partition(" ")
        if not nonce or not path:
            break
        outcome = run_one(Path(path))
        os.chdir(home)  # leave the work directory, which the worker removes
        more = not (isinstance(outcome, BuildFailureInfo) and outcome.reason in _LEAVE_AFTER)
        failed = isinstance(outcome, BuildFailureInfo)
        log_line(end_line(nonce, 1 if failed else 0, more))
        if not more:
            break
        # A build is usually followed by its pack job: the packer's modules are loaded
        # now, while the worker publishes the build, rather than once the job has come.
        importlib.import_module("envstore.artifacts.stage")
    return 0


def _private_stdin() -> io.TextIOBase:
    """The requests pipe on a descriptor the build's child processes do not inherit.

    File descriptor 0 becomes ``/dev/null``: a tool run by a build (an sdist's build script,
    say) can neither read the next build's request nor learn the nonce that ends a build.
    """
    private = os.dup(0)  # non-inheritable, as every descriptor Python creates
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return io.TextIOWrapper(io.FileIO(private, "r"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``REQUEST_JSON`` runs one build (exit code 0 success, 1 failure), ``-``
    serves the builds a worker sends on stdin (see ``contract.END_MARK``); 2 is bad usage."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m envstore.pipeline.runner REQUEST_JSON|-", file=sys.stderr)
        return 2
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace", line_buffering=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args[0] == "-":
        return serve(_private_stdin())
    return 1 if isinstance(run_one(Path(args[0])), BuildFailureInfo) else 0


if __name__ == "__main__":
    _die_with_parent()
    sys.exit(main())

"""Solve only, no build: the use case behind ``GET /specification/``.

The request's specs are validated here with the same parser and limits as a submission; the
solve itself runs in a child process (``python -m envstore.backends.conda_solve``) in its own
process group, killed at ``solve_request_timeout``, and at most ``max_concurrent_solves`` run at
once, so a slow or hanging channel can neither hang the request nor starve the server. The
channels of the answer are rows of the ``channel`` table (created when new), so each package's
``channel_id`` can be looked up with ``GET /channel/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.core.matchspec import parse_match_spec
from envstore.core.specs import EnvironmentSpec, SpecLimits, parse_specification
from envstore.db.models import Channel, utcnow
from envstore.errors import BuildFailure, InvalidInput, InvalidSpec, Unavailable
from envstore.settings import Settings

__all__ = ["SolveQuery", "solve_specification"]

_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()
_QUEUE_WAIT = 2.0  # seconds a request waits for a free solve slot before a 503
_GRACE = 5.0  # at most this on top of the solver's own timeout, for start-up and repodata


@dataclass(frozen=True)
class SolveQuery:
    channels: Sequence[str]
    conda: Sequence[str]
    pip: Sequence[str] = ()


def solve_specification(
    db: Session, settings: Settings, query: SolveQuery, limits: SpecLimits
) -> list[dict[str, Any]]:
    """``[{"name","version","build","channel_id","channel","size"}]``: what ``query`` installs.

    ``/channel/`` lists only channels of builds the caller can see, so each row names its
    channel too.
    """
    spec = _validated(query, limits)
    settings.channel_rules.urls(spec.all_channels)  # the allow-list (I12), before any fetch
    payload = {
        "kind": spec.kind,
        # A PyPI-only query resolves for the interpreter a build of it would use.
        "python": spec.python or settings.default_python,
        "interpreter_cache": str(settings.uv_cache_dir.parent / "interpreters.json"),
        "channels": list(spec.channels),
        "conda": list(spec.match_specs),
        "pip": list(spec.pip),
        "platform": settings.conda_platform,
        "cache_dir": str(settings.store_dir / "cache" / "repodata"),
        "uv_cache_dir": str(settings.uv_cache_dir),
        "pypi_index_url": settings.pypi_index_url,
        "channel_alias": settings.channel_alias,
        "timeout": settings.solve_request_timeout,
        "virtual_packages": dict(settings.virtual_packages),
        "credentials": {k: v.as_dict() for k, v in settings.channel_credentials.items()},
    }
    slot = _slot(settings.max_concurrent_solves)
    if not slot.acquire(timeout=_QUEUE_WAIT):
        raise Unavailable("too many solves are running; retry in a few seconds", retry_after=5)
    try:
        packages = _run_child(payload, settings.solve_request_timeout)
    finally:
        slot.release()
    ids = _channel_ids(db, {str(p["channel"]) for p in packages})
    return [
        {
            "name": p["name"],
            "version": p["version"],
            "build": p["build"],
            "channel_id": ids[str(p["channel"])],
            "channel": str(p["channel"]),  # an addition: the name without a /channel/ lookup
            "size": int(p["size"] or 0),
        }
        for p in packages
    ]


def _validated(query: SolveQuery, limits: SpecLimits) -> EnvironmentSpec:
    """The query as a spec, parsed exactly as a submission: what builds, solves."""
    if not query.conda and not query.pip:
        raise InvalidInput("name at least one package with 'conda' (or 'pip')")
    text = json.dumps(
        {
            "channels": list(query.channels),
            "dependencies": [*query.conda, *([{"pip": list(query.pip)}] if query.pip else [])],
        }
    )
    spec = parse_specification(text, limits)
    if spec.kind == "conda":
        if not spec.channels:
            raise InvalidInput("conda packages need at least one channel with 'channel'")
        if spec.pip and "python" not in {parse_match_spec(dep).name for dep in spec.conda}:
            raise InvalidInput("'pip' packages need 'python' among the 'conda' packages")
    return spec


def _slot(size: int) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(size, threading.BoundedSemaphore(size))


def _run_child(payload: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "envstore.backends.conda_solve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=os.environ | {"NO_COLOR": "1", "UV_PYTHON_DOWNLOADS": "never"},
    )
    try:
        deadline = timeout + min(_GRACE, timeout)
        out, err = child.communicate(json.dumps(payload).encode(), timeout=deadline)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise BuildFailure(
            "solve_timeout", f"the solve took longer than {timeout:g}s (solve_request_timeout)"
        ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # grandchildren (uv) must not outlive it
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise BuildFailure("internal_error", f"the solver process failed: {tail[0]}") from None
    if "packages" not in answer:
        reason, message = answer.get("reason", "solve_failed"), answer.get("message", "")
        if reason == "invalid_spec":
            raise InvalidSpec(message)
        raise BuildFailure(reason, f"{reason}: {message}")
    packages: list[dict[str, Any]] = answer["packages"]
    return packages


def _channel_ids(db: Session, names: set[str]) -> dict[str, int]:
    """Ids of the channel rows named ``names``, creating the missing ones."""
    for _attempt in range(3):
        found = {c.name: c.id for c in db.scalars(select(Channel).where(Channel.name.in_(names)))}
        missing = names - set(found)
        if not missing:
            return found
        db.add_all(Channel(name=name, last_update=utcnow()) for name in sorted(missing))
        try:
            db.commit()
        except IntegrityError:  # another request created one of them first
            db.rollback()
    raise Unavailable("could not record the channels of the solve; retry")

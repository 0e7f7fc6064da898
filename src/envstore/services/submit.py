"""Submitting a specification: parse and validate in the request, then queue a build.

Nothing is solved here (ARCHITECTURE.md "Where things run"). Resubmitting the spec of the
environment's current build, or of a build still queued or running, returns that build instead
of queueing another one (L2: 200 identical submits make one build).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.builds import BuildStatus, build_key
from envstore.core.lockfile import Lockfile
from envstore.core.names import validate_name
from envstore.core.permissions import Permission
from envstore.core.specs import SpecLimits, parse_specification
from envstore.db.models import Build, Environment, Namespace, Specification, utcnow
from envstore.errors import InvalidSpec, PayloadTooLarge
from envstore.services.common import get_build

__all__ = ["Submission", "rebuild", "submit"]

# SQLite serialises writers but not read-then-write sequences; one process owns an embedded
# store, so a process lock makes "find a pending build or create one" atomic there. PostgreSQL
# uses a row lock on the environment instead.
_SUBMIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Submission:
    text: str
    environment_name: str | None = None
    namespace: str | None = None
    description: str | None = None
    is_lockfile: bool = False
    as_of: datetime | None = None


@dataclass(frozen=True)
class _Parsed:
    name: str | None
    kind: str
    spec: dict[str, Any]
    sha256: str
    description: str | None
    lockfile_text: str | None


def submit(db: Session, who: Principal, sub: Submission, limits: SpecLimits) -> Build:
    """Validate ``sub`` and return the build that will produce it (new or already there)."""
    parsed = _parse(sub, limits)
    name = validate_name(sub.environment_name or parsed.name or "", kind="environment name")
    ns_name = validate_name(sub.namespace or who.primary_namespace, kind="namespace")
    who.require(Permission.ENV_CREATE, ns_name, name)
    if not _namespace_exists(db, ns_name):
        who.require(Permission.NAMESPACE_CREATE, ns_name)
    with _SUBMIT_LOCK:
        for attempt in range(3):
            try:
                build = _submit_locked(db, ns_name, name, parsed, sub, who.name)
                db.commit()
                return build
            except IntegrityError:
                db.rollback()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _namespace_exists(db: Session, name: str) -> bool:
    found = db.scalar(
        select(Namespace.id).where(Namespace.name == name, Namespace.deleted_on.is_(None))
    )
    return found is not None


def rebuild(db: Session, build_id: int, submitted_by: str | None = None) -> Build:
    """Queue a new build of the same specification (an explicit rebuild always builds)."""
    old = get_build(db, build_id)
    env = db.get_one(Environment, old.environment_id)
    spec = db.get_one(Specification, old.specification_id)
    build = _new_build(db, env, spec, old.as_of, old.lockfile_text, submitted_by)
    db.commit()
    return build


def _parse(sub: Submission, limits: SpecLimits) -> _Parsed:
    if len(sub.text.encode()) > limits.max_bytes:
        raise PayloadTooLarge(
            f"specification is over the limit of {limits.max_bytes} bytes (max_spec_bytes)",
            limit="max_spec_bytes",
        )
    if sub.is_lockfile:
        lock = Lockfile.from_text(sub.text, max_depth=limits.max_depth)
        if len(lock.packages) > limits.max_packages * 10:
            raise InvalidSpec(f"lockfile lists more than {limits.max_packages * 10} packages")
        kind = "pypi" if all(p.manager == "pip" for p in lock.packages) else "conda"
        data = {"name": sub.environment_name, "lockfile": lock.to_dict()}
        body = json.dumps(data, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(("lockfile:" + body).encode()).hexdigest()
        return _Parsed(sub.environment_name, kind, data, digest, None, lock.to_yaml())
    spec = parse_specification(sub.text, limits)
    if sub.environment_name:
        spec = spec.with_name(sub.environment_name)
    return _Parsed(spec.name, spec.kind, spec.to_dict(), spec.sha256, spec.description, None)


def _submit_locked(
    db: Session, ns_name: str, name: str, parsed: _Parsed, sub: Submission, submitted_by: str
) -> Build:
    namespace = db.scalar(select(Namespace).where(Namespace.name == ns_name))
    if namespace is None:
        namespace = Namespace(name=ns_name, metadata_={})
        db.add(namespace)
        db.flush()
    elif namespace.deleted_on is not None:
        namespace.deleted_on = None
    env = db.scalar(
        select(Environment)
        .where(Environment.namespace_id == namespace.id, Environment.name == name)
        .with_for_update()
    )
    if env is None:
        env = Environment(
            namespace_id=namespace.id, name=name, description=sub.description or parsed.description
        )
        db.add(env)
        db.flush()
    else:
        if env.deleted_on is not None:
            env.deleted_on = None
            env.current_build_id = None
        if sub.description is not None:
            env.description = sub.description
    spec = db.scalar(select(Specification).where(Specification.sha256 == parsed.sha256))
    if spec is None:
        spec = Specification(name=name, kind=parsed.kind, spec=parsed.spec, sha256=parsed.sha256)
        db.add(spec)
        db.flush()
    existing = _same_build(db, env, spec.id, sub.as_of)
    if existing is not None:
        return existing
    return _new_build(db, env, spec, sub.as_of, parsed.lockfile_text, submitted_by)


def _same_build(
    db: Session, env: Environment, spec_id: int, as_of: datetime | None
) -> Build | None:
    """The current build or a pending one with the same spec and as-of date, if any."""
    candidates = db.scalars(
        select(Build).where(
            Build.environment_id == env.id,
            Build.specification_id == spec_id,
            Build.deleted_on.is_(None),
            Build.status.in_([BuildStatus.QUEUED, BuildStatus.BUILDING, BuildStatus.COMPLETED]),
        )
    ).all()
    for build in candidates:
        same_date = build.as_of == as_of
        pending = build.status in (BuildStatus.QUEUED, BuildStatus.BUILDING)
        if same_date and (pending or build.id == env.current_build_id):
            return build
    return None


def _new_build(
    db: Session,
    env: Environment,
    spec: Specification,
    as_of: datetime | None,
    lockfile_text: str | None,
    submitted_by: str | None,
) -> Build:
    now = utcnow()
    build = Build(
        environment_id=env.id,
        specification_id=spec.id,
        status=BuildStatus.QUEUED,
        scheduled_on=now,
        as_of=as_of,
        lockfile_text=lockfile_text,
        submitted_by=submitted_by,
    )
    db.add(build)
    db.flush()
    build.build_key = build_key(spec.sha256, now, build.id, env.name)
    return build

"""Submitting a specification: parse, validate and apply the policy in the request, then queue
a build.

Nothing is solved here (ARCHITECTURE.md "Where things run"). The policy in force for the target
environment turns the submitted spec into the *effective spec* (stored on the build beside the
submitted one, with what the policy added and why) or refuses it (PolicyViolation, a 400).
Resubmitting the spec of the environment's current build, or of a build still queued or
running, returns that build instead of queueing another one, as long as the policy gives the
same effective spec (L2: 200 identical submits make one build).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.builds import BuildStatus, build_key
from envstore.core.channels import ChannelRules
from envstore.core.lockfile import Lockfile
from envstore.core.names import validate_name
from envstore.core.permissions import Permission
from envstore.core.policy import apply_to_spec, check_lockfile_sources
from envstore.core.policy_settings import EffectivePolicy
from envstore.core.specs import EnvironmentSpec, SpecLimits, parse_specification
from envstore.db.models import Build, Environment, Namespace, Specification, utcnow
from envstore.errors import InvalidSpec, PayloadTooLarge, PolicyViolation, TooManyRequests
from envstore.services.audit import record
from envstore.services.common import get_build
from envstore.services.settings import effective_policy

__all__ = [
    "PolicyInputs",
    "Submission",
    "Submitted",
    "check_submit_quota",
    "rebuild",
    "submit",
]

DEFAULT_INDEX_URL = "https://pypi.org/simple"

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
class Submitted:
    """The build that will produce a submission, and whether it was queued by it."""

    build: Build
    created: bool

    @property
    def message(self) -> str:
        """What the submitter is told: a new build, or which build already stands for it."""
        build = self.build
        if self.created:
            return f"build {build.id} queued"
        if build.status == BuildStatus.COMPLETED:
            return f"unchanged: build {build.id} is current ({build.status})"
        return f"unchanged: build {build.id} is already {build.status}"


@dataclass(frozen=True)
class PolicyInputs:
    """What the policy compares a spec with, from the server's settings."""

    channel_alias: str = "https://conda.anaconda.org/"
    index_url: str = DEFAULT_INDEX_URL


@dataclass(frozen=True)
class _Parsed:
    name: str | None
    kind: str
    spec: dict[str, Any]
    sha256: str
    description: str | None
    lockfile_text: str | None
    parsed_spec: EnvironmentSpec | None = None
    lockfile: Lockfile | None = None


@dataclass(frozen=True)
class _Effective:
    spec: dict[str, Any] | None  # None for a lockfile: it is installed as it stands
    additions: list[dict[str, str]]
    as_of: datetime | None


def submit(
    db: Session,
    who: Principal,
    sub: Submission,
    limits: SpecLimits,
    inputs: PolicyInputs | None = None,
    channels: ChannelRules | None = None,
) -> Submitted:
    """Validate ``sub``, apply the policy and return the build that will produce it (new or
    already there).

    Channels are checked against ``channels`` (the server's allow-list, I12) here, so a refused
    channel is a 400 naming it and the rule; the worker checks again before fetching."""
    parsed = _parse(sub, limits, channels or ChannelRules())
    name = validate_name(sub.environment_name or parsed.name or "", kind="environment name")
    ns_name = validate_name(sub.namespace or _default_namespace(db, who), kind="namespace")
    who.require(Permission.ENV_CREATE, ns_name, name)
    if not _namespace_exists(db, ns_name):
        who.require(Permission.NAMESPACE_CREATE, ns_name)
    policy = effective_policy(db, ns_name, name)
    effective = _apply_policy(policy, parsed, sub.as_of, inputs or PolicyInputs())
    with _SUBMIT_LOCK:
        for attempt in range(3):
            try:
                build, new = _submit_locked(db, who, ns_name, name, parsed, sub, effective)
                if new:
                    _record_submit(db, who, ns_name, name, build, parsed, effective)
                db.commit()
                return Submitted(build, created=new)
            except IntegrityError:
                db.rollback()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def _default_namespace(db: Session, who: Principal) -> str:
    """``default_namespace`` (a global setting), else the caller's primary namespace."""
    chosen = effective_policy(db, "").one("default_namespace")
    return str(chosen.value) if chosen is not None else who.primary_namespace


def _apply_policy(
    policy: EffectivePolicy, parsed: _Parsed, as_of: datetime | None, inputs: PolicyInputs
) -> _Effective:
    """The effective spec of ``parsed`` under ``policy``, or PolicyViolation (I9 for lockfiles)."""
    if parsed.lockfile is not None:
        check_lockfile_sources(parsed.lockfile, policy, channel_alias=inputs.channel_alias)
        return _Effective(None, [], as_of)
    assert parsed.parsed_spec is not None
    strict = policy.one("require_lockfile_hashes")
    if strict is not None and strict.value:
        raise PolicyViolation(
            "only lockfiles, every package with its sha256, may be submitted here "
            f"(require_lockfile_hashes, {strict.level.label}); submit one with is_lockfile "
            "(envstore env create --lockfile)"
        )
    spec, added = apply_to_spec(
        parsed.parsed_spec, policy, channel_alias=inputs.channel_alias, index_url=inputs.index_url
    )
    additions = [a.to_dict() for a in added]
    frozen = policy.one("freeze_date")
    if as_of is None and frozen is not None:
        as_of = datetime.fromisoformat(frozen.value)
        additions.append(
            {
                "setting": "freeze_date",
                "level": frozen.level.label,
                "added": frozen.value,
                "to": "as_of",
            }
        )
    return _Effective(spec.to_dict(), additions, as_of)


def _record_submit(
    db: Session,
    who: Principal,
    namespace: str,
    name: str,
    build: Build,
    parsed: _Parsed,
    effective: _Effective,
) -> None:
    record(
        db,
        who,
        "environment.submit",
        namespace=namespace,
        environment=name,
        target=f"build {build.id}",
        after={
            "build_id": build.id,
            "specification_sha256": parsed.sha256,
            "is_lockfile": parsed.lockfile is not None,
            "as_of": build.as_of.isoformat() if build.as_of else None,
            "policy_additions": effective.additions,
        },
    )


def _namespace_exists(db: Session, name: str) -> bool:
    found = db.scalar(
        select(Namespace.id).where(Namespace.name == name, Namespace.deleted_on.is_(None))
    )
    return found is not None


def rebuild(
    db: Session, who: Principal, build_id: int, inputs: PolicyInputs | None = None
) -> Build:
    """Queue a new build of the same specification (an explicit rebuild always builds), under
    the policy in force now: a rebuild never gets around a rule made since."""
    old = get_build(db, build_id)
    env = db.get_one(Environment, old.environment_id)
    namespace = db.get_one(Namespace, env.namespace_id)
    spec = db.get_one(Specification, old.specification_id)
    if old.lockfile_text is not None:
        parsed = _Parsed(env.name, spec.kind, spec.spec, spec.sha256, None, old.lockfile_text,
                         lockfile=Lockfile.from_text(old.lockfile_text))  # fmt: skip
    else:
        submitted = parse_specification(yaml.safe_dump(spec.spec))
        parsed = _Parsed(env.name, spec.kind, spec.spec, spec.sha256, None, None, submitted)
    as_of = old.as_of if old.policy_additions is None else _own_as_of(old)
    effective = _apply_policy(
        effective_policy(db, namespace.name, env.name), parsed, as_of, inputs or PolicyInputs()
    )
    build = _new_build(db, env, spec, effective, old.lockfile_text, who.name)
    record(
        db,
        who,
        "build.rebuild",
        namespace=namespace.name,
        environment=env.name,
        target=f"build {build.id}",
        before={"build_id": old.id},
        after={"build_id": build.id, "policy_additions": effective.additions},
    )
    db.commit()
    return build


def _own_as_of(build: Build) -> datetime | None:
    """The as-of date the user chose for ``build``, without the one ``freeze_date`` gave it."""
    from_policy = any(a.get("setting") == "freeze_date" for a in build.policy_additions or [])
    return None if from_policy else build.as_of


def _parse(sub: Submission, limits: SpecLimits, rules: ChannelRules) -> _Parsed:
    if len(sub.text.encode()) > limits.max_bytes:
        raise PayloadTooLarge(
            f"specification is over the limit of {limits.max_bytes} bytes (max_spec_bytes)",
            limit="max_spec_bytes",
        )
    if sub.is_lockfile:
        lock = Lockfile.from_text(sub.text, max_depth=limits.max_depth)
        if len(lock.packages) > limits.max_packages * 10:
            raise InvalidSpec(f"lockfile lists more than {limits.max_packages * 10} packages")
        rules.urls(lock.channels)
        for package in lock.packages:
            if package.manager == "conda":
                rules.check_url(package.url, f"{package.url} (of {package.name})")
        kind = "pypi" if all(p.manager == "pip" for p in lock.packages) else "conda"
        data = {"name": sub.environment_name, "lockfile": lock.to_dict()}
        body = json.dumps(data, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(("lockfile:" + body).encode()).hexdigest()
        return _Parsed(
            sub.environment_name, kind, data, digest, None, lock.to_yaml(), lockfile=lock
        )
    spec = parse_specification(sub.text, limits)
    rules.urls(spec.all_channels)
    if sub.environment_name:
        spec = spec.with_name(sub.environment_name)
    return _Parsed(spec.name, spec.kind, spec.to_dict(), spec.sha256, spec.description, None, spec)


def _submit_locked(
    db: Session,
    who: Principal,
    ns_name: str,
    name: str,
    parsed: _Parsed,
    sub: Submission,
    effective: _Effective,
) -> tuple[Build, bool]:
    namespace = db.scalar(select(Namespace).where(Namespace.name == ns_name))
    if namespace is None or namespace.deleted_on is not None:
        record(db, who, "namespace.create", namespace=ns_name, after={"by": "submission"})
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
    existing = _same_build(db, env, spec, effective)
    if existing is not None:
        return existing, False
    return _new_build(db, env, spec, effective, parsed.lockfile_text, who.name), True


def _same_build(
    db: Session, env: Environment, spec: Specification, effective: _Effective
) -> Build | None:
    """The current build or a pending one with the same spec, effective spec and as-of date."""
    candidates = db.scalars(
        select(Build).where(
            Build.environment_id == env.id,
            Build.specification_id == spec.id,
            Build.deleted_on.is_(None),
            Build.status.in_([BuildStatus.QUEUED, BuildStatus.BUILDING, BuildStatus.COMPLETED]),
        )
    ).all()
    for build in candidates:
        # builds from before policy existed stored no effective spec: theirs was the spec itself
        built = build.effective_spec if build.effective_spec is not None else spec.spec
        wanted = effective.spec if effective.spec is not None else spec.spec
        same_date = build.as_of == effective.as_of and built == wanted
        pending = build.status in (BuildStatus.QUEUED, BuildStatus.BUILDING)
        if same_date and (pending or build.id == env.current_build_id):
            return build
    return None


def _new_build(
    db: Session,
    env: Environment,
    spec: Specification,
    effective: _Effective,
    lockfile_text: str | None,
    submitted_by: str | None,
) -> Build:
    now = utcnow()
    build = Build(
        environment_id=env.id,
        specification_id=spec.id,
        status=BuildStatus.QUEUED,
        scheduled_on=now,
        as_of=effective.as_of,
        lockfile_text=lockfile_text,
        effective_spec=effective.spec,
        policy_additions=effective.additions,
        submitted_by=submitted_by,
    )
    db.add(build)
    db.flush()
    build.build_key = build_key(spec.sha256, now, build.id, env.name)
    return build


def check_submit_quota(db: Session, who: Principal, per_minute: int) -> None:
    """I11: refuse (429) a submission or rebuild from a user who has queued ``per_minute``
    builds in the last minute; other users are not affected, and a resubmission that queues
    nothing new does not count. ``per_minute`` 0 turns the quota off. Administrators of the
    whole organisation (who may change the quota) are not limited."""
    if per_minute <= 0 or not who.name or who.can_everywhere(Permission.SETTING_UPDATE):
        return
    now = utcnow()
    window = timedelta(minutes=1)
    recent = db.scalars(
        select(Build.scheduled_on)
        .where(Build.submitted_by == who.name, Build.scheduled_on > now - window)
        .order_by(Build.scheduled_on.desc())
        .limit(per_minute)
    ).all()
    if len(recent) < per_minute:
        return
    retry_after = max(1, math.ceil((recent[-1] + window - now).total_seconds()))
    raise TooManyRequests(
        f"submission quota: {who.name} queued {per_minute} builds in the last minute "
        f"(submit_quota_per_minute); try again in {retry_after} s",
        retry_after=retry_after,
    )

"""The impact of the policy now in force on environments that exist: ``envstore policy check``.

A policy change never touches existing builds. This lists the current builds that the policy in
force *now* would refuse, with the reason, so an admin sees what a new rule means before anyone
rebuilds. The packages come from the recorded package rows (one query per environment); the
requirement chains, only for environments that break a rule, from their stored lockfile.
"""

from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.lockfile import Lockfile
from envstore.core.names import validate_name
from envstore.core.permissions import Permission
from envstore.core.policy import SolvedPackage, Violation, apply_to_spec, check_solved
from envstore.core.policy_settings import EffectivePolicy
from envstore.core.specs import parse_specification
from envstore.db.models import (
    Build,
    BuildPackage,
    Channel,
    Environment,
    Namespace,
    Package,
    Specification,
)
from envstore.errors import EnvstoreError, InvalidSpec, PolicyViolation
from envstore.services.access import visible
from envstore.services.artifacts import lockfile_text
from envstore.services.settings import effective_policy
from envstore.storage.blobstore import BlobStore

__all__ = ["check_environments"]


def check_environments(
    db: Session,
    blobs: BlobStore,
    who: Principal,
    *,
    namespace: str | None = None,
    environment: str | None = None,
    channel_alias: str = "https://conda.anaconda.org/",
    index_url: str = "https://pypi.org/simple",
) -> tuple[int, list[dict[str, Any]]]:
    """``(environments checked, those whose current build breaks the policy, each with its
    violations)``, among the environments ``who`` may read.

    Both checkpoints are applied again: the build's spec as at submit (channels, required and
    outright denied packages), and its recorded packages as on the solved set."""
    query = (
        select(Namespace.name, Environment.name, Environment.current_build_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .where(
            Environment.deleted_on.is_(None),
            Namespace.deleted_on.is_(None),
            Environment.current_build_id.is_not(None),
            visible(db, who, Permission.ENV_READ, Namespace.name, Environment.name),
        )
        .order_by(Namespace.name, Environment.name)
    )
    if namespace:
        query = query.where(Namespace.name == validate_name(namespace, kind="namespace"))
    if environment:
        query = query.where(Environment.name == validate_name(environment, kind="environment name"))
    checked = 0
    out = []
    for ns_name, env_name, build_id in db.execute(query).tuples():
        checked += 1
        policy = effective_policy(db, ns_name, env_name)
        if not policy.values:
            continue
        packages = _recorded_packages(db, build_id)
        found = [v.to_dict() for v in check_solved(packages, policy, channel_alias=channel_alias)]
        if found:
            chained = _with_lockfile_chains(db, blobs, build_id, packages, policy, channel_alias)
            found = [v.to_dict() for v in chained]
        refusal = _spec_refusal(db, build_id, policy, channel_alias, index_url)
        if refusal is not None:
            found.insert(0, refusal)
        if found:
            out.append(
                {
                    "namespace": ns_name,
                    "environment": env_name,
                    "build_id": build_id,
                    "violations": found,
                }
            )
    return checked, out


def _spec_refusal(
    db: Session,
    build_id: int | None,
    policy: EffectivePolicy,
    channel_alias: str,
    index_url: str,
) -> dict[str, Any] | None:
    """What the submit would say of the build's spec today, if it would refuse it."""
    row = db.execute(
        select(Build.effective_spec, Specification.spec, Build.lockfile_text)
        .join(Specification, Specification.id == Build.specification_id)
        .where(Build.id == build_id)
    ).one()
    if row[2] is not None:
        return None  # a lockfile: its packages are the solved set, checked above
    try:
        spec = parse_specification(yaml.safe_dump(row[0] or row[1]))
        apply_to_spec(spec, policy, channel_alias=channel_alias, index_url=index_url)
    except PolicyViolation as exc:
        return {"rule": "submit", "package": "", "version": "", "manager": "",
                "level": "", "detail": "", "reason": "", "chain": [],
                "message": exc.message}  # fmt: skip
    except InvalidSpec:
        return None
    return None


def _recorded_packages(db: Session, build_id: int | None) -> list[SolvedPackage]:
    rows = db.execute(
        select(Package.name, Package.version, Package.manager, Channel.name, BuildPackage.requested)
        .join(BuildPackage, BuildPackage.package_id == Package.id)
        .join(Channel, Channel.id == Package.channel_id)
        .where(BuildPackage.build_id == build_id)
    ).tuples()
    return [
        SolvedPackage(
            name, version, "pip" if manager == "pip" else "conda", channel, None, bool(req)
        )
        for name, version, manager, channel, req in rows
    ]


def _with_lockfile_chains(
    db: Session,
    blobs: BlobStore,
    build_id: int | None,
    packages: list[SolvedPackage],
    policy: EffectivePolicy,
    channel_alias: str,
) -> list[Violation]:
    """The violations again, with requirement edges from the build's stored lockfile."""
    assert build_id is not None
    try:
        lock = Lockfile.from_text(lockfile_text(db, blobs, build_id))
    except EnvstoreError:  # no lockfile (an old or odd build): the violations without chains
        return check_solved(packages, policy, channel_alias=channel_alias)
    edges = {(p.manager, p.name.lower()): tuple(p.dependencies) for p in lock.packages}
    with_edges = [
        SolvedPackage(
            p.name,
            p.version,
            p.manager,
            p.source,
            edges.get((p.manager, p.name.lower()), ()),
            p.requested,
        )
        for p in packages
    ]
    return check_solved(with_edges, policy, channel_alias=channel_alias)

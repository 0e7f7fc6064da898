"""What changed between two builds: packages added, removed and changed, each marked as
requested (named in the spec) or a dependency. Read from the packages recorded at publish."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.db.models import Build, BuildPackage, Package
from envstore.errors import Conflict
from envstore.services.common import get_build

__all__ = ["diff_builds", "format_diff", "previous_build_id"]

_Key = tuple[str, str]  # (manager, name)


def _packages(db: Session, build_id: int) -> dict[_Key, dict[str, Any]]:
    build = get_build(db, build_id)
    if build.status != BuildStatus.COMPLETED:
        raise Conflict(f"build {build_id} is {build.status}; only completed builds have packages")
    rows = db.execute(
        select(
            Package.manager, Package.name, Package.version, Package.build, BuildPackage.requested
        )
        .join(BuildPackage, BuildPackage.package_id == Package.id)
        .where(BuildPackage.build_id == build_id)
    ).all()
    return {
        (r[0], r[1]): {"version": r[2], "build": r[3] or "", "requested": bool(r[4])} for r in rows
    }


def diff_builds(db: Session, old_id: int, new_id: int) -> dict[str, Any]:
    """The lockfile diff of build ``old_id`` → build ``new_id``."""
    old, new = _packages(db, old_id), _packages(db, new_id)
    added, removed, changed = [], [], []
    for key in sorted(new.keys() - old.keys()):
        added.append({"manager": key[0], "name": key[1], **new[key]})
    for key in sorted(old.keys() - new.keys()):
        removed.append({"manager": key[0], "name": key[1], **old[key]})
    unchanged = 0
    for key in sorted(old.keys() & new.keys()):
        before, after = old[key], new[key]
        if (before["version"], before["build"]) == (after["version"], after["build"]):
            unchanged += 1
            continue
        changed.append(
            {
                "manager": key[0],
                "name": key[1],
                "old_version": before["version"],
                "new_version": after["version"],
                "old_build": before["build"],
                "new_build": after["build"],
                "requested": after["requested"],
            }
        )
    return {
        "from_build_id": old_id,
        "to_build_id": new_id,
        "added": added,
        "removed": removed,
        "changed": changed,
        "unchanged": unchanged,
    }


def previous_build_id(db: Session, build_id: int) -> int | None:
    """The newest completed build of the same environment before ``build_id``."""
    env_id = db.scalar(select(Build.environment_id).where(Build.id == build_id))
    return db.scalar(
        select(Build.id)
        .where(
            Build.environment_id == env_id,
            Build.id < build_id,
            Build.status == BuildStatus.COMPLETED,
            Build.deleted_on.is_(None),
        )
        .order_by(Build.id.desc())
        .limit(1)
    )


def _role(entry: dict[str, Any]) -> str:
    return "requested" if entry["requested"] else "dependency"


def format_diff(diff: dict[str, Any]) -> str:
    """Plain text, one package per line: ``+`` added, ``-`` removed, ``~`` changed."""
    lines = [f"diff build {diff['from_build_id']} -> build {diff['to_build_id']}:"]
    for entry in diff["added"]:
        lines.append(f"  + {entry['name']} {entry['version']} ({entry['manager']}, {_role(entry)})")
    for entry in diff["removed"]:
        lines.append(f"  - {entry['name']} {entry['version']} ({entry['manager']}, {_role(entry)})")
    for entry in diff["changed"]:
        lines.append(
            f"  ~ {entry['name']} {entry['old_version']} -> {entry['new_version']} "
            f"({entry['manager']}, {_role(entry)})"
        )
    total = len(diff["added"]) + len(diff["removed"]) + len(diff["changed"])
    lines.append(f"  {total} change(s), {diff['unchanged']} unchanged")
    return "\n".join(lines) + "\n"

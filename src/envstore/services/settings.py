"""Policy settings at three levels (global, namespace, environment): read, change, history.

Admins of a level change it (``setting::update`` there; the global level needs it on
``*/*``); viewers of a level read it. Every change is kept in ``setting_change`` (who, when,
old and new value) and recorded in the audit log, in the transaction of the change. The
merge itself is pure (:mod:`envstore.core.policy_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.core.policy_settings import (
    EffectivePolicy,
    Level,
    merge_levels,
    validate_changes,
)
from envstore.db.models import Setting, SettingChange, utcnow
from envstore.errors import Conflict, Forbidden
from envstore.services.audit import record
from envstore.services.common import Page, Paging, get_environment, get_namespace, paginate

__all__ = [
    "SettingsView",
    "build_artifacts",
    "effective_policy",
    "read_settings",
    "resolve_level",
    "setting_history",
    "update_settings",
]


@dataclass(frozen=True)
class SettingsView:
    level: Level
    merged: dict[str, Any]  # every key, merged down to this level (None: unset)
    sources: dict[str, Any]  # key -> the level(s) its merged value came from
    set_here: dict[str, Any]  # what this level itself stores


def resolve_level(db: Session, namespace: str | None, environment: str | None) -> Level:
    """The level named by a route; NotFound for a namespace or environment that is not there."""
    if not namespace:
        return Level()
    get_namespace(db, namespace)
    if not environment:
        return Level(namespace)
    get_environment(db, namespace, environment)
    return Level(namespace, environment)


def _require(who: Principal, permission: Permission, level: Level) -> None:
    if level.is_global:
        # Global settings apply to everyone, so anyone who may read settings somewhere may read
        # them; changing them takes an administrator of everything.
        ok = (
            who.can_everywhere(permission)
            if permission is Permission.SETTING_UPDATE
            else who.can_somewhere(permission)
        )
    elif not level.environment:
        ok = (
            who.can(permission, level.namespace)
            if permission is Permission.SETTING_UPDATE
            else who.can_in_namespace(permission, level.namespace)
        )
    else:
        ok = who.can(permission, level.namespace, level.environment)
    if not ok:
        raise Forbidden()


def _stored(db: Session, level: Level) -> dict[str, Any]:
    rows = db.execute(
        select(Setting.key, Setting.value).where(
            Setting.namespace == level.namespace, Setting.environment == level.environment
        )
    ).tuples()
    return {key: value for key, value in rows}


def effective_policy(db: Session, namespace: str, environment: str = "") -> EffectivePolicy:
    """The merged policy of ``namespace/environment`` (one query)."""
    rows = db.execute(
        select(Setting.namespace, Setting.environment, Setting.key, Setting.value).where(
            or_(
                and_(Setting.namespace == "", Setting.environment == ""),
                and_(Setting.namespace == namespace, Setting.environment == ""),
                and_(Setting.namespace == namespace, Setting.environment == environment),
            )
        )
    ).tuples()
    by_level: dict[Level, dict[str, Any]] = {}
    for ns, env, key, value in rows:
        by_level.setdefault(Level(ns, env), {})[key] = value
    order = [Level(), Level(namespace), Level(namespace, environment)] if namespace else [Level()]
    if not environment:
        order = order[:2]
    return merge_levels((level, by_level.get(level, {})) for level in dict.fromkeys(order))


def read_settings(db: Session, who: Principal, level: Level) -> SettingsView:
    _require(who, Permission.SETTING_READ, level)
    policy = effective_policy(db, level.namespace, level.environment)
    return SettingsView(level, policy.plain(), policy.sources(), _stored(db, level))


def update_settings(
    db: Session, who: Principal, level: Level, changes: dict[str, Any]
) -> SettingsView:
    """Set (or, with None, unset) keys at ``level``; InvalidInput names a bad key or value.

    Two admins setting a new key at once race on the (level, key) unique constraint: the loser
    applies its change again over the winner's row, as if it had come second."""
    _require(who, Permission.SETTING_UPDATE, level)
    values = validate_changes(level, changes)
    for attempt in range(3):
        try:
            _apply_changes(db, who, level, values)
            db.commit()
            break
        except IntegrityError:
            db.rollback()
            if attempt == 2:
                raise Conflict("the settings changed meanwhile; try again") from None
    return read_settings(db, who, level)


def _apply_changes(db: Session, who: Principal, level: Level, values: dict[str, Any]) -> None:
    now = utcnow()
    current = {
        row.key: row
        for row in db.scalars(
            select(Setting).where(
                Setting.namespace == level.namespace,
                Setting.environment == level.environment,
                Setting.key.in_(values),
            )
        )
    }
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key, value in values.items():
        row = current.get(key)
        old = row.value if row is not None else None
        if old == value:
            continue
        before[key], after[key] = old, value
        if value is None and row is not None:
            db.delete(row)
        elif row is None:
            db.add(
                Setting(
                    namespace=level.namespace, environment=level.environment, key=key, value=value
                )
            )
        else:
            row.value = value
        db.add(
            SettingChange(
                namespace=level.namespace,
                environment=level.environment,
                key=key,
                old_value=old,
                new_value=value,
                changed_by=who.name,
                changed_on=now,
            )
        )
    if after:
        record(
            db,
            who,
            "setting.update",
            namespace=level.namespace or None,
            environment=level.environment or None,
            target=level.label,
            before=before,
            after=after,
        )


def setting_history(
    db: Session, who: Principal, level: Level, paging: Paging
) -> Page[SettingChange]:
    """Every change of this level's settings, oldest first."""
    _require(who, Permission.SETTING_READ, level)
    query = select(SettingChange).where(
        SettingChange.namespace == level.namespace,
        SettingChange.environment == level.environment,
    )
    return paginate(db, query, paging, {"id": SettingChange.id}, SettingChange.id)


def build_artifacts(policy: EffectivePolicy, server_default: list[str]) -> list[str]:
    """The artifacts a build makes: the ``build_artifacts`` setting of its environment (merged
    global → namespace → environment), else the server's ``ENVSTORE_BUILD_ARTIFACTS``.

    The one place that decides it; LOCKFILE, YAML and LOGS are kept whatever it says."""
    chosen = policy.one("build_artifacts")
    return list(chosen.value) if chosen is not None else list(server_default)

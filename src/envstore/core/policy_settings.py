"""Policy settings: the keys, how each is validated, and how the levels merge.

Settings live at three levels: global, a namespace, an environment. The effective policy of an
environment merges them global → namespace → environment, key by key, with a rule per key that
keeps an organisation's limits from being undone below: allow-lists intersect (a lower level can
only narrow them), deny lists and required/included packages add up, ``max_packages`` takes the
smallest, ``require_lockfile_hashes`` holds if any level sets it, and the rest (defaults, pins
per package, ``freeze_date``, ``build_artifacts``) are overridden by the most specific level.
Every merged value remembers the level it came from, so a refusal or an addition can name it.

Pure: no I/O. Values are plain JSON; :func:`validate_value` turns what a client sent into the
stored form or raises :class:`InvalidInput` naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from envstore.core.channels import channel_url
from envstore.core.names import validate_name
from envstore.core.specs import validate_conda_dependency, validate_pip_requirement
from envstore.core.versions import validate_range
from envstore.errors import InvalidInput, InvalidSpec

__all__ = [
    "ARTIFACT_TYPES",
    "KEYS",
    "EffectivePolicy",
    "Level",
    "Sourced",
    "merge_levels",
    "validate_changes",
    "validate_value",
]

ARTIFACT_TYPES = ("LOCKFILE", "YAML", "LOGS", "CONDA_PACK", "DOCKER_MANIFEST")
_MAX_ITEMS = 500
_MANAGERS = ("conda", "pypi")
Merge = Literal["override", "union", "intersect", "min", "any", "by_name"]


@dataclass(frozen=True)
class Level:
    """Where a setting is stored: global (no namespace), a namespace, or an environment."""

    namespace: str = ""
    environment: str = ""

    @property
    def label(self) -> str:
        if not self.namespace:
            return "global"
        if not self.environment:
            return f"namespace {self.namespace}"
        return f"environment {self.namespace}/{self.environment}"

    @property
    def is_global(self) -> bool:
        return not self.namespace


@dataclass(frozen=True)
class KeyInfo:
    name: str
    merge: Merge
    meaning: str
    global_only: bool = False


KEYS: dict[str, KeyInfo] = {
    k.name: k
    for k in (
        KeyInfo(
            "conda_allowed_channels",
            "intersect",
            "channels a spec or lockfile may use (empty: any)",
        ),
        KeyInfo("conda_default_channels", "override", "channels used when a spec names none"),
        KeyInfo("conda_required_packages", "union", "conda packages every spec must name"),
        KeyInfo(
            "conda_default_packages",
            "override",
            "conda packages added when a spec names no conda package",
        ),
        KeyInfo(
            "conda_included_packages", "union", "conda packages added unless the spec names them"
        ),
        KeyInfo("pypi_required_packages", "union", "PyPI packages every spec must name"),
        KeyInfo(
            "pypi_default_packages",
            "override",
            "PyPI packages added when a spec names no PyPI package",
        ),
        KeyInfo(
            "pypi_included_packages", "union", "PyPI packages added unless the spec names them"
        ),
        KeyInfo("build_artifacts", "override", "artifacts each build makes"),
        KeyInfo(
            "default_namespace",
            "override",
            "namespace of a submission that names none",
            global_only=True,
        ),
        KeyInfo(
            "pypi_allowed_indexes",
            "intersect",
            "URL prefixes of package indexes and files PyPI packages may come from (empty: any)",
        ),
        KeyInfo(
            "denied_packages",
            "union",
            "packages (optionally versions) refused anywhere in a solution, with a reason",
        ),
        KeyInfo("pinned_packages", "by_name", "version ranges applied wherever a package appears"),
        KeyInfo("max_packages", "min", "most packages a solved environment may hold"),
        KeyInfo("freeze_date", "override", "default as-of date of solves"),
        KeyInfo(
            "require_lockfile_hashes",
            "any",
            "only lockfiles (every package with its sha256) may be submitted",
        ),
    )
}


@dataclass(frozen=True)
class Sourced:
    """One merged value and the level that set it."""

    value: Any
    level: Level


@dataclass
class EffectivePolicy:
    """The merged settings of one environment. List-valued keys hold one :class:`Sourced` per
    item (the level that contributed it); the others one :class:`Sourced` or nothing."""

    values: dict[str, Sourced | list[Sourced]] = field(default_factory=dict)

    def one(self, key: str) -> Sourced | None:
        found = self.values.get(key)
        return found if isinstance(found, Sourced) else None

    def items(self, key: str) -> list[Sourced]:
        found = self.values.get(key)
        return found if isinstance(found, list) else []

    def plain(self) -> dict[str, Any]:
        """Key → merged value (lists of items), every key present (None when unset)."""
        out: dict[str, Any] = {}
        for key in KEYS:
            found = self.values.get(key)
            if isinstance(found, list):
                out[key] = [item.value for item in found]
            else:
                out[key] = found.value if found is not None else None
        return out

    def sources(self) -> dict[str, Any]:
        """Key → the level label(s) its value came from (for the API and the UI)."""
        out: dict[str, Any] = {}
        for key, found in self.values.items():
            if isinstance(found, list):
                out[key] = [item.level.label for item in found]
            else:
                out[key] = found.level.label
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON form that :meth:`from_json` reads back (the build request carries it)."""
        out: dict[str, Any] = {}
        for key, found in self.values.items():
            items = found if isinstance(found, list) else [found]
            out[key] = {
                "list": isinstance(found, list),
                "items": [
                    {"value": s.value, "ns": s.level.namespace, "env": s.level.environment}
                    for s in items
                ],
            }
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EffectivePolicy:
        values: dict[str, Sourced | list[Sourced]] = {}
        for key, entry in data.items():
            items = [Sourced(i["value"], Level(i["ns"], i["env"])) for i in entry["items"]]
            values[key] = items if entry["list"] else items[0]
        return cls(values)


def merge_levels(levels: Iterable[tuple[Level, Mapping[str, Any]]]) -> EffectivePolicy:
    """Merge the stored values of each level, given from global to the most specific."""
    merged: dict[str, Sourced | list[Sourced]] = {}
    for level, stored in levels:
        for key, value in stored.items():
            info = KEYS.get(key)
            if info is None or value is None:
                continue  # a key an older or newer envstore stored: ignored, never fatal
            merged[key] = _merge_one(info, merged.get(key), value, level)
    return EffectivePolicy(merged)


def _merge_one(
    info: KeyInfo, before: Sourced | list[Sourced] | None, value: Any, level: Level
) -> Sourced | list[Sourced]:
    new_items = [Sourced(v, level) for v in value] if isinstance(value, list) else []
    old_items = before if isinstance(before, list) else []
    if info.merge == "union":
        return old_items + new_items
    if info.merge == "intersect":
        if not new_items:  # an empty list means "any": it narrows nothing
            return old_items
        if not old_items:
            return new_items
        allowed = {_canonical(info.name, s.value) for s in old_items}
        return [s for s in new_items if _canonical(info.name, s.value) in allowed]
    if info.merge == "by_name":
        by_name = {_pin_key(s.value): s for s in old_items}
        by_name.update({_pin_key(s.value): s for s in new_items})
        return list(by_name.values())
    if info.merge == "min" and isinstance(before, Sourced) and before.value <= value:
        return before
    if info.merge == "any" and isinstance(before, Sourced) and before.value and not value:
        return before
    return Sourced(value, level)  # override: the most specific level's whole value


def _canonical(key: str, value: str) -> str:
    if key == "conda_allowed_channels":
        return channel_url(value)
    return value.rstrip("/") + "/"


def _pin_key(pin: Mapping[str, Any]) -> tuple[str | None, str]:
    return (pin.get("manager"), str(pin["name"]))


def validate_changes(level: Level, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of ``changes`` for ``level`` (None stays None: it removes the key).

    Raises :class:`InvalidInput` naming the key for an unknown key, a wrong type, or a
    global-only key at a namespace or environment level."""
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidInput("give the settings to change as an object {key: value}")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        info = KEYS.get(str(key))
        if info is None:
            raise InvalidInput(
                f"unknown setting {str(key)[:80]!r}; known settings: {', '.join(sorted(KEYS))}"
            )
        if info.global_only and not level.is_global:
            raise InvalidInput(f"setting {key!r} can only be set globally, not for {level.label}")
        out[info.name] = None if value is None else validate_value(info.name, value)
    return out


def validate_value(key: str, value: Any) -> Any:
    """The stored form of one value of ``key``; InvalidInput naming the key when it is wrong."""
    try:
        return _VALIDATORS[key](value)
    except (InvalidInput, ValueError, TypeError, KeyError) as exc:
        detail = exc.message if isinstance(exc, InvalidInput) else str(exc)
        raise InvalidInput(f"setting {key!r}: {detail}") from None


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"must be a list of {what}")
    if len(value) > _MAX_ITEMS:
        raise InvalidInput(f"lists at most {_MAX_ITEMS} items")
    return value


def _strings(value: Any, what: str) -> list[str]:
    items = _list(value, what)
    if not all(isinstance(v, str) and v.strip() for v in items):
        raise InvalidInput(f"must be a list of {what}")
    return [v.strip() for v in items]


def _channels(value: Any) -> list[str]:
    items = _strings(value, "channel names or URLs")
    try:
        for item in items:
            channel_url(item)
    except InvalidSpec as exc:
        raise InvalidInput(exc.message) from None
    return _unique(items)


def _conda_packages(value: Any) -> list[str]:
    items = _strings(value, "conda match specs")
    try:
        return _unique([validate_conda_dependency(v) for v in items])
    except InvalidSpec as exc:
        raise InvalidInput(exc.message) from None


def _pypi_packages(value: Any) -> list[str]:
    items = _strings(value, "PEP 508 requirements")
    try:
        return _unique([validate_pip_requirement(v) for v in items])
    except InvalidSpec as exc:
        raise InvalidInput(exc.message) from None


def _indexes(value: Any) -> list[str]:
    items = _strings(value, "URLs")
    for item in items:
        if not re.match(r"^(https?|file)://[^\s]+$", item):
            raise InvalidInput(f"{item[:100]!r} is not an http(s):// or file:// URL")
    return _unique(items)


def _artifacts(value: Any) -> list[str]:
    items = [v.upper() for v in _strings(value, "artifact types")]
    unknown = sorted(set(items) - set(ARTIFACT_TYPES))
    if unknown:
        raise InvalidInput(
            f"unknown artifact type(s) {unknown}; known: {', '.join(ARTIFACT_TYPES)}"
        )
    return [kind for kind in ARTIFACT_TYPES if kind in items]


def _package_rule(item: Any, *, with_reason: bool) -> dict[str, Any]:
    if isinstance(item, str):
        head, _, tail = item.strip().partition(" ")
        item = {"name": head, "version": tail.strip() or None}
    if not isinstance(item, dict):
        raise InvalidInput("each entry is an object {name, version, ...} or 'NAME RANGE'")
    allowed = {"name", "version", "manager"} | ({"reason"} if with_reason else set())
    extra = sorted(set(item) - allowed)
    if extra:
        raise InvalidInput(f"unknown field(s) {extra}; an entry has {sorted(allowed)}")
    name: Any = item.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}", name):
        raise InvalidInput(f"invalid package name {name!r}")
    manager = item.get("manager")
    if manager is not None and manager not in _MANAGERS:
        raise InvalidInput(f"manager must be 'conda' or 'pypi', not {manager!r}")
    version: Any = item.get("version")
    if version is not None and (not isinstance(version, str) or not version.strip()):
        raise InvalidInput(f"version of {name} must be a version range such as '>=1.2,<2'")
    rule: dict[str, Any] = {"name": name.lower(), "version": validate_range(version)}
    if manager is not None:
        rule["manager"] = manager
    if with_reason:
        reason = item.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > 500:
            raise InvalidInput(f"reason of {name} must be text of at most 500 characters")
        rule["reason"] = reason.strip()
    return rule


def _denied(value: Any) -> list[dict[str, Any]]:
    return [_package_rule(v, with_reason=True) for v in _list(value, "package rules")]


def _pins(value: Any) -> list[dict[str, Any]]:
    pins = [_package_rule(v, with_reason=False) for v in _list(value, "pins")]
    for pin in pins:
        if pin["version"] is None:
            raise InvalidInput(f"the pin of {pin['name']} needs a version range ('2.2.*')")
    return pins


def _max_packages(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise InvalidInput("must be an integer from 1 to 100000")
    return int(value)


def _freeze_date(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("must be an ISO date or datetime ('2024-06-01')")
    try:
        moment = (
            datetime.combine(date.fromisoformat(value), datetime.min.time())
            if len(value) == 10
            else datetime.fromisoformat(value)
        )
    except ValueError:
        raise InvalidInput(f"{value[:40]!r} is not an ISO date or datetime") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if not 1990 <= moment.year <= 2200:
        raise InvalidInput(f"{value!r} is out of range")
    return moment.isoformat()


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("must be true or false")
    return value


def _namespace(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("must be a namespace name")
    return validate_name(value, kind="namespace")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


_VALIDATORS = {
    "conda_allowed_channels": _channels,
    "conda_default_channels": _channels,
    "conda_required_packages": _conda_packages,
    "conda_default_packages": _conda_packages,
    "conda_included_packages": _conda_packages,
    "pypi_required_packages": _pypi_packages,
    "pypi_default_packages": _pypi_packages,
    "pypi_included_packages": _pypi_packages,
    "build_artifacts": _artifacts,
    "default_namespace": _namespace,
    "pypi_allowed_indexes": _indexes,
    "denied_packages": _denied,
    "pinned_packages": _pins,
    "max_packages": _max_packages,
    "freeze_date": _freeze_date,
    "require_lockfile_hashes": _boolean,
}
assert set(_VALIDATORS) == set(KEYS)

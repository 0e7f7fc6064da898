"""Policy evaluation: what a spec becomes under the policy, and what a solution may contain.

Two checkpoints (ARCHITECTURE.md "Where things run"):

* :func:`apply_to_spec` runs in the submit request. It adds default and included packages and
  default channels, refuses a disallowed channel or index, a missing required package or a
  package denied outright, and returns the **effective spec** with one :class:`Addition` per
  change, each naming the setting and the level it came from.
* :func:`check_solved` runs in the build process on the solved package set, before anything is
  installed (a denied package can arrive as a dependency), and on submitted lockfiles. Each
  :class:`Violation` names the package, the rule, its level and reason, and the chain of
  requirements that pulled the package in.

Pure: no I/O. The services load the settings (:mod:`envstore.core.policy_settings` merges
them); the pipeline calls :func:`check_solved`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from packaging.utils import canonicalize_name

from envstore.core.channels import channel_url
from envstore.core.lockfile import Lockfile
from envstore.core.policy_settings import EffectivePolicy, Sourced
from envstore.core.specs import EnvironmentSpec, conda_name, pip_name
from envstore.core.versions import in_range
from envstore.errors import InvalidSpec, PolicyViolation

__all__ = [
    "Addition",
    "SolvedPackage",
    "Violation",
    "apply_to_spec",
    "check_lockfile_sources",
    "check_solved",
    "conda_constraints",
    "describe",
    "pip_constraints",
    "requirement_chain",
]

Manager = Literal["conda", "pip"]


@dataclass(frozen=True)
class Addition:
    """One change the policy made to a spec: ``what`` was added, by ``setting`` at ``level``."""

    setting: str
    level: str
    what: str
    kind: Literal["conda", "pip", "channel", "constraint"]

    def to_dict(self) -> dict[str, str]:
        return {"setting": self.setting, "level": self.level, "added": self.what, "to": self.kind}


@dataclass(frozen=True)
class SolvedPackage:
    """One package of a solution (or a lockfile): ``depends`` holds the names it requires,
    None when the solver did not say (the chain is then looked up only if it is needed)."""

    name: str
    version: str
    manager: Manager
    source: str = ""  # channel URL (conda) or index URL (pip)
    depends: tuple[str, ...] | None = None
    requested: bool = False


@dataclass(frozen=True)
class Violation:
    package: str
    version: str
    manager: Manager
    rule: str  # the setting: denied_packages, pinned_packages, max_packages, ...
    level: str
    detail: str  # the rule as written, e.g. "liba >=2"
    reason: str = ""
    chain: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "manager": self.manager,
            "rule": self.rule,
            "level": self.level,
            "detail": self.detail,
            "reason": self.reason,
            "chain": list(self.chain),
            "message": describe([self]),
        }


def describe(violations: Sequence[Violation]) -> str:
    """One readable paragraph per violation, as ``status_info`` and the API show them."""
    parts = []
    for v in violations:
        if v.rule == "max_packages":
            parts.append(f"{v.detail} (max_packages, {v.level})")
            continue
        text = (
            f"{v.package} {v.version} ({v.manager}) is refused by {v.rule} '{v.detail}' ({v.level})"
        )
        if v.reason:
            text += f": {v.reason}"
        if len(v.chain) > 1:
            text += "; pulled in by " + " -> ".join(v.chain)
        elif v.chain:
            text += "; requested by the spec"
        parts.append(text)
    return "; ".join(parts)


# ---------------------------------------------------------------- the spec, at submit


def apply_to_spec(
    spec: EnvironmentSpec, policy: EffectivePolicy, *, channel_alias: str, index_url: str
) -> tuple[EnvironmentSpec, list[Addition]]:
    """The effective spec and what the policy added; PolicyViolation for what it refuses."""
    additions: list[Addition] = []
    conda = _with_packages(
        list(spec.conda), policy, "conda", conda_name, additions, empty=not spec.conda
    )
    pip = _with_packages(list(spec.pip), policy, "pypi", pip_name, additions, empty=not spec.pip)
    channels = list(spec.channels)
    default_channels = policy.one("conda_default_channels")
    kind = EnvironmentSpec(conda=tuple(conda)).kind
    if not channels and kind == "conda" and default_channels is not None:
        channels = list(default_channels.value)
        additions += [
            Addition("conda_default_channels", default_channels.level.label, c, "channel")
            for c in channels
        ]
    effective = EnvironmentSpec(
        spec.name,
        tuple(channels),
        tuple(sorted(set(conda))),
        tuple(sorted(set(pip))),
        spec.variables,
        spec.description,
        spec.virtual_packages,
    )
    _check_channels(effective.channels, policy, channel_alias)
    if effective.pip:
        _check_index(index_url, policy)
    _check_required(effective, policy)
    _check_denied_outright(effective, policy)
    additions += [
        Addition("pinned_packages", pin.level.label, _pin_text(pin.value), "constraint")
        for pin in policy.items("pinned_packages")
    ]
    return effective, additions


def _with_packages(
    deps: list[str],
    policy: EffectivePolicy,
    manager: str,
    name_of: Any,
    additions: list[Addition],
    *,
    empty: bool,
) -> list[str]:
    kind: Literal["conda", "pip"] = "conda" if manager == "conda" else "pip"
    defaults = policy.one(f"{manager}_default_packages")
    if empty and defaults is not None:
        for dep in defaults.value:
            deps.append(dep)
            additions.append(
                Addition(f"{manager}_default_packages", defaults.level.label, dep, kind)
            )
    named = {name_of(dep) for dep in deps}
    for item in policy.items(f"{manager}_included_packages"):
        if name_of(item.value) not in named:
            named.add(name_of(item.value))
            deps.append(item.value)
            additions.append(
                Addition(f"{manager}_included_packages", item.level.label, item.value, kind)
            )
    return deps


def _check_channels(channels: Iterable[str], policy: EffectivePolicy, alias: str) -> None:
    allowed = policy.items("conda_allowed_channels")
    if not allowed:
        return
    urls = {channel_url(a.value, alias): a for a in allowed}
    for channel in channels:
        try:
            url = channel_url(channel, alias)
        except InvalidSpec as exc:
            raise PolicyViolation(exc.message) from None
        if url not in urls:
            raise PolicyViolation(
                f"channel {channel!r} is not allowed (conda_allowed_channels, "
                f"{_levels(allowed)}); allowed channels: {', '.join(a.value for a in allowed)}"
            )


def _index_allowed(url: str, allowed: Sequence[Sourced]) -> bool:
    target = url.rstrip("/") + "/"
    return any(target.startswith(a.value.rstrip("/") + "/") for a in allowed)


def _check_index(index_url: str, policy: EffectivePolicy) -> None:
    allowed = policy.items("pypi_allowed_indexes")
    if allowed and not _index_allowed(index_url, allowed):
        raise PolicyViolation(
            f"package index {index_url} is not allowed (pypi_allowed_indexes, "
            f"{_levels(allowed)}); allowed indexes: {', '.join(a.value for a in allowed)}"
        )


def _check_required(spec: EnvironmentSpec, policy: EffectivePolicy) -> None:
    for manager, deps, name_of in (
        ("conda", spec.conda, conda_name),
        ("pypi", spec.pip, pip_name),
    ):
        named = {name_of(dep) for dep in deps}
        for item in policy.items(f"{manager}_required_packages"):
            if name_of(item.value) not in named:
                where = "conda dependencies" if manager == "conda" else "pip: requirements"
                raise PolicyViolation(
                    f"the spec must name {item.value!r} among its {where} "
                    f"({manager}_required_packages, {item.level.label})"
                )


def _check_denied_outright(spec: EnvironmentSpec, policy: EffectivePolicy) -> None:
    """A spec that asks for a package denied in every version is refused at once; denied
    versions are for the solved set to find, since the solver picks the version."""
    for manager, deps, name_of in (("conda", spec.conda, conda_name), ("pip", spec.pip, pip_name)):
        for dep in deps:
            rule = _deny_rule(policy, name_of(dep), manager, version=None)
            if rule is not None:
                raise PolicyViolation(
                    describe([_denied(name_of(dep), "", manager, rule, (name_of(dep),))])
                )


# ---------------------------------------------------------------- the solved set, in the build


def check_solved(
    packages: Sequence[SolvedPackage], policy: EffectivePolicy, *, channel_alias: str
) -> list[Violation]:
    """Every rule the solution breaks (empty: it may be installed)."""
    found: list[Violation] = []
    limit = policy.one("max_packages")
    if limit is not None and len(packages) > limit.value:
        found.append(
            Violation(
                "", "", "conda", "max_packages", limit.level.label,
                f"the solution has {len(packages)} packages; the limit is {limit.value}",
            )
        )  # fmt: skip
    pins = policy.items("pinned_packages")
    channels = policy.items("conda_allowed_channels")
    allowed_urls = {channel_url(c.value, channel_alias) for c in channels}
    indexes = policy.items("pypi_allowed_indexes")
    for package in packages:
        name = _normal(package.name, package.manager)
        rule = _deny_rule(policy, name, package.manager, version=package.version)
        if rule is not None:
            found.append(_denied(name, package.version, package.manager, rule, ()))
        for pin in pins:
            if _applies(pin.value, name, package.manager) and not in_range(
                package.version, pin.value["version"]
            ):
                found.append(
                    Violation(
                        name, package.version, package.manager, "pinned_packages",
                        pin.level.label, _pin_text(pin.value),
                    )
                )  # fmt: skip
        found += _source_violations(package, name, channels, allowed_urls, indexes)
    return [_with_chain(v, packages) for v in found]


def _source_violations(
    package: SolvedPackage,
    name: str,
    channels: Sequence[Sourced],
    allowed_urls: set[str],
    indexes: Sequence[Sourced],
) -> list[Violation]:
    if not package.source:
        return []
    outside = not any(package.source.startswith(url) for url in allowed_urls)
    if package.manager == "conda" and channels and outside:
        return [
                Violation(
                    name, package.version, "conda", "conda_allowed_channels",
                    _levels(channels), f"from {package.source}",
                    reason="the channel is not in the allow-list",
                )
            ]  # fmt: skip
    if package.manager == "pip" and indexes and not _index_allowed(package.source, indexes):
        return [
            Violation(
                name, package.version, "pip", "pypi_allowed_indexes", _levels(indexes),
                f"from {package.source}", reason="the index is not in the allow-list",
            )
        ]  # fmt: skip
    return []


def check_lockfile_sources(lock: Lockfile, policy: EffectivePolicy, *, channel_alias: str) -> None:
    """I9: a submitted lockfile whose channels or package URLs are outside the allow-lists is
    refused at submit; the packages themselves then go through :func:`check_solved`."""
    _check_channels(lock.channels, policy, channel_alias)
    packages = [
        SolvedPackage(p.name, p.version, p.manager, p.url, tuple(p.dependencies))
        for p in lock.packages
    ]
    violations = check_solved(packages, policy, channel_alias=channel_alias)
    if violations:
        raise PolicyViolation("the lockfile breaks the policy: " + describe(violations))


def _normal(name: str, manager: str) -> str:
    return str(canonicalize_name(name)) if manager == "pip" else name.lower()


def _applies(rule: Mapping[str, Any], name: str, manager: str) -> bool:
    wanted = rule.get("manager")  # conda | pypi | None (both)
    if wanted is not None and {"conda": "conda", "pypi": "pip"}[wanted] != manager:
        return False
    return _normal(str(rule["name"]), manager) == name


def _deny_rule(
    policy: EffectivePolicy, name: str, manager: str, *, version: str | None
) -> Sourced | None:
    for item in policy.items("denied_packages"):
        if not _applies(item.value, name, manager):
            continue
        if version is None and item.value["version"] is None:
            return item
        if version is not None and in_range(version, item.value["version"]):
            return item
    return None


def _denied(
    name: str, version: str, manager: str, rule: Sourced, chain: tuple[str, ...]
) -> Violation:
    return Violation(
        name,
        version,
        "pip" if manager == "pip" else "conda",
        "denied_packages",
        rule.level.label,
        _pin_text(rule.value),
        rule.value.get("reason", ""),
        chain,
    )


def _pin_text(rule: Mapping[str, Any]) -> str:
    return f"{rule['name']} {rule['version']}" if rule.get("version") else str(rule["name"])


def _levels(items: Sequence[Sourced]) -> str:
    return ", ".join(dict.fromkeys(item.level.label for item in items))


def _with_chain(violation: Violation, packages: Sequence[SolvedPackage]) -> Violation:
    if not violation.package:
        return violation
    chain = requirement_chain(violation.package, violation.manager, packages)
    return Violation(**{**violation.__dict__, "chain": chain})


def requirement_chain(
    name: str, manager: str, packages: Sequence[SolvedPackage]
) -> tuple[str, ...]:
    """The shortest chain ``requested -> ... -> name`` through the packages' requirements;
    ``(name,)`` when the spec asked for it, ``()`` when nothing says who needs it."""
    by_name = {_normal(p.name, p.manager): p for p in packages if p.manager == manager}
    target = by_name.get(name)
    if target is not None and target.requested:
        return (name,)
    parents: dict[str, list[str]] = {}
    for package in by_name.values():
        for dep in package.depends or ():
            parents.setdefault(_normal(dep, manager), []).append(_normal(package.name, manager))
    queue: deque[tuple[str, ...]] = deque([(name,)])
    seen = {name}
    while queue:
        path = queue.popleft()
        for parent in parents.get(path[0], []):
            if parent in seen:
                continue
            seen.add(parent)
            longer = (parent, *path)
            if by_name[parent].requested or not parents.get(parent):
                return longer
            queue.append(longer)
    return ()


# ---------------------------------------------------------------- pins for the solvers


def conda_constraints(policy: EffectivePolicy) -> list[str]:
    """Pins as conda match specs, for the solver's ``constraints`` (they apply wherever the
    package appears, without asking for it)."""
    out = []
    for pin in policy.items("pinned_packages"):
        if pin.value.get("manager") in (None, "conda"):
            clauses = [c[2:] if c.startswith("==") else c for c in pin.value["version"].split(",")]
            out.append(f"{pin.value['name']} {','.join(clauses)}")
    return out


def pip_constraints(policy: EffectivePolicy) -> list[str]:
    """Pins as PEP 508 lines for ``uv pip compile --constraint``."""
    return [
        f"{pin.value['name']}{pin.value['version']}"
        for pin in policy.items("pinned_packages")
        if pin.value.get("manager") in (None, "pypi")
    ]

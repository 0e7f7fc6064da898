"""Environment specifications: parsing, validation, canonical form and hash.

Accepts the usual conda ``environment.yaml`` (``name``, ``channels``, ``dependencies`` with an
optional ``pip:`` list, ``variables``, ``description``) and a ``requirements.txt`` style list.
A spec whose conda dependencies are at most a ``python`` version is a *PyPI environment*,
built with uv; anything else is a *conda environment*.

The canonical form ignores key order, whitespace, comments, duplicate entries and the order of
dependencies, so the same spec always has the same :attr:`EnvironmentSpec.sha256`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envstore.core.matchspec import parse_match_spec, python_request
from envstore.core.yamlsafe import load_bounded_yaml
from envstore.errors import InvalidSpec, LimitExceeded, PayloadTooLarge

__all__ = [
    "EnvironmentSpec",
    "SpecLimits",
    "conda_name",
    "parse_specification",
    "pip_name",
    "validate_conda_dependency",
    "validate_pip_requirement",
]

_ALLOWED_KEYS = {
    "name",
    "channels",
    "dependencies",
    "variables",
    "description",
    "prefix",
    "virtual_packages",
}
_LIST_ITEM = re.compile(rb"^[ \t]*- ", re.MULTILINE)
_MAPPING_KEY = re.compile(r"^[A-Za-z_][\w-]*[ \t]*:([ \t]|$)", re.MULTILINE)
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VIRTUAL = re.compile(r"__[a-z][a-z0-9_]{0,30}")
_VIRTUAL_VALUE = re.compile(r"[A-Za-z0-9_.+]{1,64}(?:=[A-Za-z0-9_.+]{1,64})?")


@dataclass(frozen=True)
class SpecLimits:
    """Bounds applied while parsing (settings ``max_*``)."""

    max_bytes: int = 256 * 1024
    max_packages: int = 500
    max_depth: int = 20
    max_aliases: int = 16


@dataclass(frozen=True)
class EnvironmentSpec:
    """A validated specification. ``conda`` holds conda match specs, ``pip`` PEP 508 strings.

    ``conda`` keeps each dependency as written (whitespace collapsed), so the spec a user sees
    and its hash do not change; :attr:`match_specs` is the form the solver takes.
    """

    name: str | None = None
    channels: tuple[str, ...] = ()
    conda: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    # conda virtual packages the solve assumes (``__cuda: "12.2"``); None removes a detected one
    virtual_packages: dict[str, str | None] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["pypi", "conda"]:
        """``pypi`` when the only conda dependency is (at most) ``python``."""
        others = [dep for dep in self.conda if _dep_name(dep) != "python"]
        return "conda" if others else "pypi"

    @property
    def python(self) -> str | None:
        """The Python request for uv (``3.11``, ``3.11.7``, ``>=3.10``) or None for the default."""
        for dep in self.conda:
            parsed = parse_match_spec(dep)
            if parsed.name == "python":
                return python_request(parsed)
        return None

    @property
    def match_specs(self) -> tuple[str, ...]:
        """The conda dependencies in the strict form rattler's solver accepts."""
        return tuple(parse_match_spec(dep).solver_spec for dep in self.conda)

    @property
    def all_channels(self) -> tuple[str, ...]:
        """``channels:`` and the channels named inside dependencies (``conda-forge::numpy``):
        the server's allow-list covers both (I12)."""
        named = (spec.rpartition("::") for spec in self.match_specs)
        return (*self.channels, *(channel for channel, sep, _ in named if sep))

    @property
    def requested_names(self) -> frozenset[str]:
        """Normalised names of every package the user asked for (conda and pip)."""
        names = {_dep_name(dep) for dep in self.conda}
        names |= {canonicalize_name(Requirement(req).name) for req in self.pip}
        return frozenset(names)

    def to_dict(self) -> dict[str, Any]:
        """The spec as an ``environment.yaml``-shaped mapping (canonical order)."""
        deps: list[Any] = list(self.conda)
        if self.pip:
            deps.append({"pip": list(self.pip)})
        data: dict[str, Any] = {
            "name": self.name,
            "channels": list(self.channels),
            "dependencies": deps,
        }
        if self.variables:
            data["variables"] = dict(sorted(self.variables.items()))
        if self.virtual_packages:
            data["virtual_packages"] = dict(sorted(self.virtual_packages.items()))
        return data

    @property
    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json.encode()).hexdigest()

    def with_name(self, name: str) -> EnvironmentSpec:
        return EnvironmentSpec(
            name,
            self.channels,
            self.conda,
            self.pip,
            self.variables,
            self.description,
            self.virtual_packages,
        )


def parse_specification(text: str | bytes, limits: SpecLimits | None = None) -> EnvironmentSpec:
    """Parse an ``environment.yaml`` or a requirements list, enforcing ``limits``."""
    limits = limits or SpecLimits()
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > limits.max_bytes:
        raise PayloadTooLarge(
            f"specification is {len(raw)} bytes; the limit is {limits.max_bytes} (max_spec_bytes)",
            limit="max_spec_bytes",
        )
    # A cheap count before parsing keeps a 10,000-package spec from costing a full YAML parse.
    if (
        len(_LIST_ITEM.findall(raw)) > limits.max_packages + 64
        or raw.count(b"\n") > 4 * limits.max_packages + 256
    ):
        _too_many(limits, f"more than {limits.max_packages}")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSpec("specification is not valid UTF-8") from None
    if "\x00" in decoded:
        raise InvalidSpec("specification contains a NUL character")
    if _looks_like_yaml(decoded):
        data = load_bounded_yaml(
            decoded, max_depth=limits.max_depth, max_aliases=limits.max_aliases
        )
        if not isinstance(data, dict):
            raise InvalidSpec("specification must be a mapping (name, channels, dependencies...)")
        spec = _from_mapping(data)
    else:
        spec = parse_requirements(decoded)
    count = len(spec.conda) + len(spec.pip)
    if count > limits.max_packages:
        _too_many(limits, str(count))
    if count == 0:
        raise InvalidSpec("specification lists no packages")
    if spec.kind == "pypi":
        _ = spec.python  # the interpreter request must be one uv understands
    return spec


def _looks_like_yaml(text: str) -> bool:
    """An ``environment.yaml`` has top-level keys (or YAML syntax); a requirements list has not."""
    if _MAPPING_KEY.search(text):
        return True
    first = next(
        (line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")),
        "",
    )
    return first.startswith(("{", "[", "---", "%", "!", "&", "*"))


def parse_requirements(text: str) -> EnvironmentSpec:
    """Parse a ``requirements.txt`` style list (one PEP 508 requirement per line)."""
    reqs: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split(" #", 1)[0].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("-"):
            raise InvalidSpec(
                f"line {number}: pip options such as {stripped.split()[0]!r} are not supported"
            )
        reqs.append(_validate_pip(stripped, f"line {number}"))
    return EnvironmentSpec(pip=_dedupe(reqs))


def _from_mapping(data: dict[Any, Any]) -> EnvironmentSpec:
    unknown = sorted(str(key) for key in data if key not in _ALLOWED_KEYS)
    if unknown:
        raise InvalidSpec(f"unknown key(s) in specification: {', '.join(unknown)}")
    name = _optional_str(data.get("name"), "name")
    description = _optional_str(data.get("description"), "description")
    channels = _str_list(data.get("channels") or [], "channels")
    conda, pip = _split_dependencies(data.get("dependencies"))
    variables = _variables(data.get("variables") or {})
    virtual = _virtual_packages(data.get("virtual_packages") or {})
    return EnvironmentSpec(
        name, tuple(channels), _dedupe(conda), _dedupe(pip), variables, description, virtual
    )


def _split_dependencies(value: Any) -> tuple[list[str], list[str]]:
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise InvalidSpec("'dependencies' must be a list")
    conda: list[str] = []
    pip: list[str] = []
    for item in value:
        if isinstance(item, dict):
            if set(item) != {"pip"}:
                raise InvalidSpec("a mapping in 'dependencies' may only be a 'pip:' list")
            pip.extend(_validate_pip(req, "pip") for req in _str_list(item["pip"] or [], "pip"))
        elif isinstance(item, str | int | float):
            conda.append(_validate_conda(str(item)))
        else:
            raise InvalidSpec(f"unsupported dependency entry: {item!r}")
    return conda, pip


def validate_conda_dependency(dep: str) -> str:
    """A conda match spec in its normal form (``numpy >=1.26``); InvalidSpec if it is not one."""
    return _validate_conda(dep)


def validate_pip_requirement(req: str) -> str:
    """A PEP 508 requirement in its normal form; InvalidSpec if it is not one (or a URL)."""
    return _validate_pip(req, "requirement")


def conda_name(dep: str) -> str:
    """The package name of a conda match spec, lower case (``conda-forge::NumPy >=1`` → numpy)."""
    return _dep_name(dep)


def pip_name(req: str) -> str:
    """The canonical name of a PEP 508 requirement (``Foo_Bar>=1`` → foo-bar)."""
    return canonicalize_name(Requirement(req).name)


def _validate_conda(dep: str) -> str:
    dep = " ".join(dep.split())
    parse_match_spec(dep)  # raises InvalidSpec naming the dependency
    return dep


def _validate_pip(req: str, where: str) -> str:
    if req.startswith("-"):
        raise InvalidSpec(f"{where}: pip options such as {req.split()[0]!r} are not supported")
    try:
        parsed = Requirement(req)
    except InvalidRequirement as exc:
        raise InvalidSpec(f"{where}: invalid requirement {req!r}: {exc}") from None
    if parsed.url:
        raise InvalidSpec(f"{where}: direct references ({req!r}) are not supported; name a version")
    return str(parsed)


def _dep_name(dep: str) -> str:
    return parse_match_spec(dep).name


def _variables(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidSpec("'variables' must be a mapping")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _VARIABLE.fullmatch(key):
            raise InvalidSpec(f"invalid variable name {key!r}")
        if not isinstance(val, str | int | float | bool):
            raise InvalidSpec(f"variable {key!r} must be a scalar")
        out[key] = str(val)
    return out


def _virtual_packages(value: Any) -> dict[str, str | None]:
    """``virtual_packages: {__cuda: "12.2", __glibc: "2.28"}``; ``null`` removes a package."""
    if not isinstance(value, dict) or len(value) > 16:
        raise InvalidSpec("'virtual_packages' must be a mapping of at most 16 entries")
    out: dict[str, str | None] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _VIRTUAL.fullmatch(key):
            raise InvalidSpec(f"invalid virtual package name {key!r} (e.g. __cuda, __glibc)")
        if val is None:
            out[key] = None
        elif isinstance(val, str | int | float) and _VIRTUAL_VALUE.fullmatch(str(val)):
            out[key] = str(val)
        else:
            raise InvalidSpec(f"virtual package {key}: {val!r} is not a version or version=build")
    return out


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise InvalidSpec(f"'{what}' must be a list of strings")
    return [str(v).strip() for v in value]


def _optional_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise InvalidSpec(f"'{what}' must be a string")
    return str(value)


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


def _too_many(limits: SpecLimits, count: str) -> None:
    raise LimitExceeded(
        f"specification lists {count} packages; the limit is {limits.max_packages} (max_packages)",
        limit="max_packages",
    )

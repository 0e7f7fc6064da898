"""Conda match specs: one parser for every form conda users write, and one normal form.

Users write the same request many ways: ``numpy=1.26=py311_0`` (what ``conda env export``
writes), ``numpy==1.26``, ``numpy 1.26 py311_0``, ``conda-forge::numpy``,
``numpy[version='>=1',build=py311*]``, ``numpy=1.2.*``, ``numpy>=1,<2``. rattler's solver only
takes the strict grammar, so every dependency is parsed here once, leniently (as conda does),
and turned into the strict form the solver takes: submit validation and the conda backend both
use :func:`parse_match_spec`, so a spec accepted at submit is never refused by the solver.

rattler's parser is pure computation (no I/O), so it is allowed in ``core``. It is imported at
the first parse, not with this module: an API process that only serves reads never loads
rattler's native library (~8 MB, issue 11); the parse is cached, so the import statement runs
once per distinct dependency.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envstore.errors import InvalidSpec

__all__ = ["CondaDependency", "parse_match_spec", "python_request"]

# A channel prefix as written before ``::`` (a name, ``name/subdir`` or a URL).
_CHANNEL = re.compile(r"[A-Za-z0-9_.\-/:~%+@]+")


@dataclass(frozen=True)
class CondaDependency:
    """One conda dependency: its normalised name, its version spec and the solver's form."""

    name: str  # lower case, as conda normalises names
    version: str | None  # rattler's version spec (``==3.11.7``, ``3.11.*``, ``>=1,<2``) or None
    solver_spec: str  # the strict form rattler's solver accepts


@functools.lru_cache(maxsize=4096)
def parse_match_spec(text: str) -> CondaDependency:
    """Parse ``text`` (any conda form); raise :class:`InvalidSpec` naming it if it is invalid."""
    from rattler import MatchSpec
    from rattler.exceptions import InvalidMatchSpecError, InvalidPackageNameError

    dep = " ".join(text.split())
    channel, sep, rest = dep.rpartition("::")
    if sep and not _CHANNEL.fullmatch(channel):
        raise InvalidSpec(f"invalid conda dependency {dep!r}: bad channel {channel!r}")
    try:
        # Lenient mode is conda's own reading (``name=1.0=0``, ``name 1.0 0``); strict mode is
        # what the solver uses, so the normal form is checked against it too.
        parsed = MatchSpec(rest, strict=False)
        solver_spec = str(parsed)
        MatchSpec(solver_spec, strict=True)
    except (InvalidMatchSpecError, InvalidPackageNameError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidSpec(f"invalid conda dependency {dep!r}: {reason}") from None
    if parsed.name is None:
        raise InvalidSpec(f"invalid conda dependency {dep!r}: it names no package")
    if sep:
        # Kept as written: a channel name is resolved against the server's channel alias
        # later, not against rattler's default one.
        solver_spec = f"{channel}::{solver_spec}"
    version = str(parsed.version) if parsed.version is not None else None
    return CondaDependency(parsed.name.normalized, version, solver_spec)


def python_request(dep: CondaDependency) -> str | None:
    """The interpreter request for uv (``3.11.7``, ``3.11``, ``>=3.10``) from a ``python`` dep.

    ``python=3.11.7=0`` (an exported pin) asks for 3.11.7: a PyPI build runs on a host
    interpreter, so the conda build string does not apply to it.
    """
    version = dep.version
    if version is None or version == "*":
        return None
    request = version.removeprefix("==")
    while request.endswith(".*"):
        request = request.removesuffix(".*")
    try:
        if request[:1].isdigit():
            Version(request)
        else:
            SpecifierSet(request)
    except (InvalidVersion, InvalidSpecifier):
        raise InvalidSpec(
            f"invalid python version {dep.solver_spec!r}: a PyPI environment needs one "
            "version (3.11, 3.11.7) or one range (>=3.10,<3.12)"
        ) from None
    return request

"""The server's rules as the conda backend applies them in the build process.

Split from :mod:`envstore.backends.conda`, which solves and installs: here is what decides
whether a build may go on. The channel allow-list is checked again before anything is fetched
(a rebuild of a spec older than the rule, I12); an unreachable channel is summarised without
what came back (I12); and the policy gate (I9, I10), given by the pipeline, sees the solution
or the submitted lockfile as :class:`~envstore.core.policy.SolvedPackage` rows before any
archive is fetched or linked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import rattler

from envstore.backends.channels import redact
from envstore.core.channels import ChannelRules
from envstore.core.lockfile import LockedPackage, Lockfile
from envstore.core.policy import SolvedPackage
from envstore.core.specs import EnvironmentSpec, conda_name, parse_specification
from envstore.errors import BuildFailure, InvalidSpec
from envstore.pipeline.contract import BuildRequest

__all__ = [
    "PolicyCheck",
    "check_allowed",
    "locked_for_policy",
    "no_policy",
    "record_for_policy",
    "request_spec",
    "unreachable",
]

# The policy on a solution, given by the pipeline: (packages, a way to learn the PyPI part's
# requirement edges if a rule is broken). It raises BuildFailure("policy_violation", ...).
PolicyCheck = Callable[
    [Sequence[SolvedPackage], Callable[[], Mapping[str, Sequence[str]]] | None], None
]


def no_policy(
    _packages: Sequence[SolvedPackage], _edges: Callable[[], Mapping[str, Sequence[str]]] | None
) -> None:
    """The gate of a build without a policy: every solution passes."""
    return None


def record_for_policy(record: rattler.RepoDataRecord, requested: frozenset[str]) -> SolvedPackage:
    """What the policy sees of one solved conda record."""
    name = record.name.normalized
    return SolvedPackage(
        name,
        str(record.version),
        "conda",
        record.url,
        tuple(conda_name(dep) for dep in record.depends),
        name in requested,
    )


def locked_for_policy(
    package: LockedPackage, requested: frozenset[str], index_url: str | None = None
) -> SolvedPackage:
    """What the policy sees of one locked package (conda, or pip from ``index_url``)."""
    source = package.url if package.manager == "conda" else (index_url or "")
    depends = tuple(package.dependencies) if package.dependencies or not index_url else None
    return SolvedPackage(
        package.name, package.version, package.manager, source, depends,
        package.name in requested or package.requested,
    )  # fmt: skip


def check_allowed(request: BuildRequest) -> None:
    """BuildFailure ``channel_not_allowed`` unless every channel (and, for a lockfile, every
    conda package URL) is allowed by the server's ``channel_allow`` (I12)."""
    rules = ChannelRules(request.channel_alias, tuple(request.channel_allow))
    try:
        if request.lockfile:
            lock = Lockfile.from_text(request.lockfile)
            rules.urls(lock.channels)
            for package in lock.packages:
                if package.manager == "conda":
                    rules.check_url(package.url, package.url)
        else:
            rules.urls(request_spec(request.spec).all_channels)
    except InvalidSpec as exc:
        raise BuildFailure("channel_not_allowed", str(exc)) from None


def unreachable(channels: Sequence[str], exc: Exception) -> BuildFailure:
    """The channel that could not be fetched, and nothing of the error itself: its text can
    hold a remote server's answer or a local file path, which a user must not probe (I12)."""
    text = str(exc)
    named = [url for url in channels if url.rstrip("/") in text] or list(channels)
    return BuildFailure(
        "channel_unreachable", f"cannot reach channel {redact(named[0])}", retryable=True
    )


def request_spec(data: Mapping[str, Any]) -> EnvironmentSpec:
    """The build request's spec, parsed again (BuildFailure ``invalid_spec`` if it is not)."""
    try:
        return parse_specification(json.dumps(dict(data)))
    except InvalidSpec as exc:
        raise BuildFailure("invalid_spec", exc.message) from None

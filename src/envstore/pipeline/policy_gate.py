"""The policy on the solved package set, in the build process, before anything is installed.

A denied package can arrive as a dependency of an allowed one, so the solver's answer is checked
against the build's effective policy (``BuildRequest.policy``, merged by the services when the
worker claimed the build) before the install stage, and a submitted lockfile likewise (I9, I10).
A violation fails the build with the stable reason ``policy_violation`` and a message naming the
package, the rule, its level and reason, and the chain of requirements that pulled it in.

The evaluation itself is pure (:func:`envstore.core.policy.check_solved`). Conda records carry
their requirements; uv's ``pylock.toml`` does not, so for a PyPI package that breaks a rule the
chain is asked of uv afterwards (``edges``), only then: a clean solution costs one pass over the
package names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from packaging.utils import canonicalize_name

from envstore.core.policy import SolvedPackage, check_solved, describe
from envstore.core.policy_settings import EffectivePolicy
from envstore.errors import BuildFailure
from envstore.pipeline.contract import BuildRequest

__all__ = ["Gate", "gate_for"]

Log = Callable[[str], None]
# parent name -> names it requires, for the PyPI part of a solution (asked of uv when needed)
Edges = Callable[[], Mapping[str, Sequence[str]]]
Gate = Callable[[Sequence[SolvedPackage], Edges | None], None]


def gate_for(request: BuildRequest, log: Log) -> Gate:
    """The check of ``request``'s policy, as the stages (and the conda backend) call it."""
    policy = EffectivePolicy.from_json(request.policy)

    def gate(packages: Sequence[SolvedPackage], edges: Edges | None = None) -> None:
        if not policy.values:
            return
        started = time.perf_counter()
        found = check_solved(packages, policy, channel_alias=request.channel_alias)
        if any(v.manager == "pip" and not v.chain for v in found) and edges is not None:
            packages = _with_pip_edges(packages, edges())
            found = check_solved(packages, policy, channel_alias=request.channel_alias)
        if found:
            raise BuildFailure("policy_violation", describe(found))
        elapsed = (time.perf_counter() - started) * 1000
        log(f"policy: {len(packages)} package(s) checked in {elapsed:.1f} ms, none refused")

    return gate


def _with_pip_edges(
    packages: Sequence[SolvedPackage], edges: Mapping[str, Sequence[str]]
) -> list[SolvedPackage]:
    canonical = {str(canonicalize_name(k)): list(v) for k, v in edges.items()}
    return [
        replace(p, depends=tuple(canonical.get(str(canonicalize_name(p.name)), ())))
        if p.manager == "pip"
        else p
        for p in packages
    ]

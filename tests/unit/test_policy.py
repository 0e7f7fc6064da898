"""The pure policy: settings keys and their validation, the merge of levels, the effective spec
at submit, and the check of a solved package set with its requirement chains."""

from __future__ import annotations

from typing import Any

import pytest

from envstore.core.lockfile import Lockfile
from envstore.core.policy import (
    SolvedPackage,
    apply_to_spec,
    check_lockfile_sources,
    check_solved,
    conda_constraints,
    pip_constraints,
    requirement_chain,
)
from envstore.core.policy_settings import (
    KEYS,
    EffectivePolicy,
    Level,
    merge_levels,
    validate_changes,
)
from envstore.core.specs import parse_specification
from envstore.core.versions import in_range, validate_range
from envstore.errors import InvalidInput, PolicyViolation

GLOBAL, NS, ENV = Level(), Level("team"), Level("team", "app")
ALIAS = "https://conda.anaconda.org/"
INDEX = "https://pypi.org/simple"

# one valid value per key, and one of the wrong type
GOOD: dict[str, Any] = {
    "conda_allowed_channels": ["conda-forge", "https://repo.example/internal"],
    "conda_default_channels": ["conda-forge"],
    "conda_required_packages": ["python"],
    "conda_default_packages": ["python 3.11.*"],
    "conda_included_packages": ["ipykernel"],
    "pypi_required_packages": ["six"],
    "pypi_default_packages": ["requests>=2"],
    "pypi_included_packages": ["ipykernel"],
    "build_artifacts": ["lockfile", "YAML", "CONDA_PACK"],
    "default_namespace": "shared",
    "pypi_allowed_indexes": ["https://pypi.org/simple"],
    "denied_packages": [{"name": "liba", "version": ">=2", "reason": "CVE-1"}],
    "pinned_packages": ["pandas 2.2.*"],
    "max_packages": 40,
    "freeze_date": "2024-06-01",
    "require_lockfile_hashes": True,
}
BAD: dict[str, Any] = {
    "conda_allowed_channels": "conda-forge",
    "conda_default_channels": ["defaults"],
    "conda_required_packages": [3],
    "conda_default_packages": ["numpy >=>=1 ("],
    "conda_included_packages": {"a": 1},
    "pypi_required_packages": ["six @ https://x/six.whl"],
    "pypi_default_packages": "requests",
    "pypi_included_packages": ["not a requirement !!"],
    "build_artifacts": ["TARBALL"],
    "default_namespace": "../x",
    "pypi_allowed_indexes": ["ftp://x/"],
    "denied_packages": [{"name": "liba", "version": ">=>=2"}],
    "pinned_packages": ["pandas"],
    "max_packages": "40",
    "freeze_date": "2024-13-45",
    "require_lockfile_hashes": "yes",
}


def test_every_key_has_a_good_and_a_bad_example() -> None:
    assert set(GOOD) == set(KEYS) == set(BAD)


@pytest.mark.parametrize("key", sorted(KEYS))
@pytest.mark.parametrize("level", [GLOBAL, NS, ENV], ids=["global", "namespace", "environment"])
def test_every_key_at_every_level(key: str, level: Level) -> None:
    if KEYS[key].global_only and not level.is_global:
        with pytest.raises(InvalidInput, match=f"'{key}' can only be set globally"):
            validate_changes(level, {key: GOOD[key]})
    else:
        stored = validate_changes(level, {key: GOOD[key]})
        assert set(stored) == {key}
        assert validate_changes(level, {key: None}) == {key: None}  # null unsets
    with pytest.raises(InvalidInput, match=key):
        validate_changes(GLOBAL, {key: BAD[key]})


def test_stored_forms() -> None:
    stored = validate_changes(GLOBAL, GOOD)
    assert stored["build_artifacts"] == ["LOCKFILE", "YAML", "CONDA_PACK"]
    assert stored["pinned_packages"] == [{"name": "pandas", "version": "==2.2.*"}]
    assert stored["denied_packages"] == [{"name": "liba", "version": ">=2", "reason": "CVE-1"}]
    assert stored["freeze_date"] == "2024-06-01T00:00:00"
    assert validate_changes(GLOBAL, {"freeze_date": "2024-06-01T12:00:00+02:00"}) == {
        "freeze_date": "2024-06-01T10:00:00"
    }


def test_unknown_keys_and_bodies_are_named() -> None:
    with pytest.raises(InvalidInput, match="unknown setting 'conda_allowed_channel'"):
        validate_changes(GLOBAL, {"conda_allowed_channel": []})
    with pytest.raises(InvalidInput, match="give the settings"):
        validate_changes(GLOBAL, {})
    with pytest.raises(InvalidInput, match="unknown field"):
        validate_changes(GLOBAL, {"denied_packages": [{"name": "x", "why": "no"}]})
    with pytest.raises(InvalidInput, match="1 to 100000"):
        validate_changes(GLOBAL, {"max_packages": 0})
    with pytest.raises(InvalidInput, match="at most 500"):
        validate_changes(GLOBAL, {"conda_included_packages": [f"p{n}" for n in range(501)]})
    validate_changes(GLOBAL, {"conda_included_packages": [f"p{n}" for n in range(500)]})


def _merged(*levels: tuple[Level, dict[str, Any]]) -> EffectivePolicy:
    return merge_levels((lvl, validate_changes(lvl, values)) for lvl, values in levels)


def test_merge_order_override_and_limits() -> None:
    policy = _merged(
        (
            GLOBAL,
            {"conda_default_channels": ["a"], "max_packages": 40, "freeze_date": "2020-01-01"},
        ),
        (NS, {"conda_default_channels": ["b"], "max_packages": 90}),
        (ENV, {"freeze_date": "2022-02-02", "require_lockfile_hashes": False}),
    )
    assert policy.plain()["conda_default_channels"] == ["b"]  # most specific wins
    assert policy.sources()["conda_default_channels"] == "namespace team"
    assert policy.plain()["max_packages"] == 40  # a lower level cannot raise the limit
    assert policy.sources()["max_packages"] == "global"
    assert policy.plain()["freeze_date"] == "2022-02-02T00:00:00"
    strict = _merged(
        (GLOBAL, {"require_lockfile_hashes": True}), (ENV, {"require_lockfile_hashes": False})
    )
    assert strict.plain()["require_lockfile_hashes"] is True  # cannot be turned off below


def test_merge_allow_lists_narrow_and_deny_lists_add_up() -> None:
    policy = _merged(
        (GLOBAL, {"conda_allowed_channels": ["conda-forge", "bioconda"],
                  "denied_packages": ["liba >=2"]}),
        (NS, {"conda_allowed_channels": ["https://conda.anaconda.org/bioconda/", "evil"],
              "denied_packages": [{"name": "libb", "reason": "licence"}]}),
    )  # fmt: skip
    assert policy.plain()["conda_allowed_channels"] == ["https://conda.anaconda.org/bioconda/"]
    assert [d["name"] for d in policy.plain()["denied_packages"]] == ["liba", "libb"]
    assert policy.sources()["denied_packages"] == ["global", "namespace team"]
    pins = _merged((GLOBAL, {"pinned_packages": ["pandas 2.2.*", "numpy <2"]}),
                   (ENV, {"pinned_packages": ["pandas 2.1.*"]}))  # fmt: skip
    assert {(p["name"], p["version"]) for p in pins.plain()["pinned_packages"]} == {
        ("pandas", "==2.1.*"),
        ("numpy", "<2"),
    }
    assert EffectivePolicy.from_json(pins.to_json()).plain() == pins.plain()


def _apply(text: str, policy: EffectivePolicy, index: str = INDEX) -> Any:
    return apply_to_spec(parse_specification(text), policy, channel_alias=ALIAS, index_url=index)


CONDA_SPEC = "channels: [conda-forge]\ndependencies: [python, numpy]\n"


def test_effective_spec_names_every_addition() -> None:
    policy = _merged(
        (GLOBAL, {"conda_included_packages": ["ipykernel", "numpy >=1"],
                  "pypi_included_packages": ["six"], "pinned_packages": ["pandas 2.2.*"]}),
        (NS, {"pypi_default_packages": ["requests"]}),
    )  # fmt: skip
    spec, added = _apply(CONDA_SPEC, policy)
    assert spec.conda == ("ipykernel", "numpy", "python")  # the spec's own numpy is kept
    assert spec.pip == ("requests", "six")
    assert [a.to_dict() for a in added] == [
        {"setting": "conda_included_packages", "level": "global", "added": "ipykernel", "to": "conda"},
        {"setting": "pypi_default_packages", "level": "namespace team", "added": "requests", "to": "pip"},
        {"setting": "pypi_included_packages", "level": "global", "added": "six", "to": "pip"},
        {"setting": "pinned_packages", "level": "global", "added": "pandas ==2.2.*", "to": "constraint"},
    ]  # fmt: skip
    # defaults only when the spec names none of its own
    spec, added = _apply("channels: [c]\ndependencies: [python, {pip: [iniconfig]}]\n", policy)
    assert spec.pip == ("iniconfig", "six")


def test_default_channels_and_packages() -> None:
    policy = _merged(
        (GLOBAL, {"conda_default_channels": ["conda-forge"],
                  "conda_default_packages": ["python", "numpy"]}),
    )  # fmt: skip
    spec, added = _apply("dependencies:\n- pip: [six]\n", policy)
    assert spec.conda == ("numpy", "python") and spec.channels == ("conda-forge",)
    assert {a.setting for a in added} == {"conda_default_channels", "conda_default_packages"}
    spec, _ = _apply("channels: [x]\ndependencies: [liba]\n", policy)
    assert spec.conda == ("liba",) and spec.channels == ("x",)


def test_refusals_at_submit_name_the_rule() -> None:
    policy = _merged((GLOBAL, {"conda_allowed_channels": ["conda-forge"]}))
    with pytest.raises(PolicyViolation, match="channel 'bioconda' is not allowed .*conda-forge"):
        _apply("channels: [conda-forge, bioconda]\ndependencies: [numpy]\n", policy)
    _apply("channels: [https://conda.anaconda.org/conda-forge]\ndependencies: [numpy]\n", policy)
    indexes = _merged((NS, {"pypi_allowed_indexes": ["https://mirror.example/simple"]}))
    with pytest.raises(PolicyViolation, match="index https://pypi.org/simple is not allowed"):
        _apply("six\n", indexes)
    _apply("six\n", indexes, index="https://mirror.example/simple/")
    required = _merged((ENV, {"conda_required_packages": ["python"],
                              "pypi_required_packages": ["six"]}))  # fmt: skip
    with pytest.raises(PolicyViolation, match="must name 'six' .*pypi_required_packages"):
        _apply(CONDA_SPEC, required)
    with pytest.raises(PolicyViolation, match="must name 'python'"):
        _apply("six\n", required)
    denied = _merged((GLOBAL, {"denied_packages": [{"name": "numpy", "reason": "no"},
                                                   {"name": "six", "version": "<1.16"}]}))  # fmt: skip
    with pytest.raises(PolicyViolation, match="numpy .* denied_packages 'numpy' .*: no"):
        _apply(CONDA_SPEC, denied)
    _apply("six\n", denied)  # a denied *range* is for the solved set to find


def _pkg(name: str, version: str = "1.0", deps: tuple[str, ...] = (), **kw: Any) -> SolvedPackage:
    return SolvedPackage(name, version, kw.pop("manager", "conda"),
                         kw.pop("source", "https://conda.anaconda.org/conda-forge/noarch/x.conda"),
                         deps, **kw)  # fmt: skip


SOLUTION = [
    _pkg("app", deps=("libmid",), requested=True),
    _pkg("libmid", deps=("liba",)),
    _pkg("liba", "2.1"),
    _pkg("python", "3.11.7", requested=True),
]


def test_a_denied_transitive_dependency_names_its_chain() -> None:
    policy = _merged((NS, {"denied_packages": [{"name": "liba", "version": ">=2,<3",
                                                "reason": "CVE-2024-1"}]}))  # fmt: skip
    [found] = check_solved(SOLUTION, policy, channel_alias=ALIAS)
    assert (found.package, found.version, found.rule, found.level, found.reason) == (
        "liba", "2.1", "denied_packages", "namespace team", "CVE-2024-1"
    )  # fmt: skip
    assert found.chain == ("app", "libmid", "liba")
    assert "pulled in by app -> libmid -> liba" in found.to_dict()["message"]
    old = [*SOLUTION[:2], _pkg("liba", "1.9"), SOLUTION[3]]
    assert check_solved(old, policy, channel_alias=ALIAS) == []


def test_solution_limits_pins_and_sources() -> None:
    policy = _merged((GLOBAL, {"max_packages": 4, "pinned_packages": ["python 3.12.*"],
                               "conda_allowed_channels": ["conda-forge"],
                               "pypi_allowed_indexes": ["https://pypi.org/simple"]}))  # fmt: skip
    assert (
        check_solved(SOLUTION[:1], _merged((GLOBAL, {"max_packages": 1})), channel_alias=ALIAS)
        == []
    )
    extra = [*SOLUTION, _pkg("six", manager="pip", source="https://evil.example/simple"),
             _pkg("other", source="https://conda.anaconda.org/bioconda/noarch/o.conda")]  # fmt: skip
    rules = sorted((v.rule, v.package) for v in check_solved(extra, policy, channel_alias=ALIAS))
    assert rules == [
        ("conda_allowed_channels", "other"),
        ("max_packages", ""),
        ("pinned_packages", "python"),
        ("pypi_allowed_indexes", "six"),
    ]
    assert conda_constraints(policy) == ["python 3.12.*"]
    assert pip_constraints(policy) == ["python==3.12.*"]


def test_requirement_chain_edges_cases() -> None:
    assert requirement_chain("app", "conda", SOLUTION) == ("app",)
    assert requirement_chain("nothing", "conda", SOLUTION) == ()
    loop = [
        _pkg("a", deps=("b",)),
        _pkg("b", deps=("a",)),
        _pkg("root", deps=("a",), requested=True),
    ]
    assert requirement_chain("b", "conda", loop) == ("root", "a", "b")


LOCK = """version: 1
metadata:
  platforms: [linux-64]
  channels: [{url: "https://conda.anaconda.org/bioconda/", used_env_vars: []}]
package:
- name: liba
  version: "2.0"
  manager: conda
  platform: linux-64
  url: https://conda.anaconda.org/bioconda/noarch/liba-2.0-0.conda
  hash: {sha256: "%s"}
""" % ("a" * 64)


def test_I9_lockfile_outside_the_allow_list_is_refused() -> None:
    lock = Lockfile.from_text(LOCK)
    with pytest.raises(PolicyViolation, match="channel .*bioconda.* is not allowed"):
        check_lockfile_sources(
            lock,
            _merged((GLOBAL, {"conda_allowed_channels": ["conda-forge"]})),
            channel_alias=ALIAS,
        )
    with pytest.raises(PolicyViolation, match="liba 2.0 .* denied_packages"):
        check_lockfile_sources(
            lock, _merged((GLOBAL, {"denied_packages": ["liba >=2"]})), channel_alias=ALIAS
        )
    check_lockfile_sources(
        lock, _merged((GLOBAL, {"denied_packages": ["liba <2"]})), channel_alias=ALIAS
    )


@pytest.mark.parametrize(
    ("version", "text", "inside"),
    [
        ("2.2.1", "==2.2.*", True),
        ("2.3.0", "==2.2.*", False),
        ("1.1.1w", ">=1.1.1", True),
        ("1.1.1w", "<1.1.1", False),
        ("9e", ">=9", True),
        ("1.0a1", "<1.0", False),  # PEP 440: "<1.0" excludes 1.0 pre-releases
        ("0.9", "<1.0", True),
        ("2.0", ">=2,<3", True),
        ("3.0", ">=2,<3", False),
        ("1.5", "!=1.5", False),
        ("1.5", None, True),
    ],
)
def test_version_ranges(version: str, text: str | None, inside: bool) -> None:
    assert in_range(version, validate_range(text)) is inside


def test_bad_version_ranges_are_refused() -> None:
    for text in ("", ">=>=1", "1.*.2", ">1.*", "a b"):
        with pytest.raises(InvalidInput):
            validate_range(text)
    assert validate_range("2.2.*") == "==2.2.*"

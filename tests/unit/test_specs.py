"""Parsing, canonical form and hash of specifications; the error corpus of bad specs."""

from __future__ import annotations

import pytest

from envstore.core.specs import SpecLimits, parse_specification
from envstore.errors import InvalidSpec, LimitExceeded, PayloadTooLarge

ENV_YAML = """
name: sci
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip:
      - six==1.16.0
      - attrs>=23
variables: {MY_VAR: "1"}
"""


def test_environment_yaml_is_a_pypi_spec_when_only_python_is_conda() -> None:
    spec = parse_specification(ENV_YAML)
    assert spec.kind == "pypi"
    assert spec.python == "3.11"
    assert spec.pip == ("attrs>=23", "six==1.16.0")
    assert spec.variables == {"MY_VAR": "1"}
    assert spec.requested_names == {"python", "six", "attrs"}


def test_conda_dependencies_make_a_conda_spec() -> None:
    spec = parse_specification("dependencies: [numpy>=1.26, conda-forge::scipy 1.11.*, python]\n")
    assert spec.kind == "conda"
    assert spec.requested_names == {"numpy", "scipy", "python"}


def test_same_spec_hashes_the_same_whatever_the_layout() -> None:
    a = parse_specification(ENV_YAML)
    b = parse_specification(
        "# comment\nvariables:\n  MY_VAR: 1\ndependencies:\n"
        "- pip: [attrs>=23, six==1.16.0, six==1.16.0]\n"
        "- python=3.11\nchannels:\n- conda-forge\nname: sci\n"
    )
    assert a.sha256 == b.sha256
    assert a.sha256 != parse_specification(ENV_YAML.replace("1.16.0", "1.15.0")).sha256


def test_requirements_txt() -> None:
    spec = parse_specification("# tools\nsix==1.16.0  # pinned\n\nIniConfig\n")
    assert spec.kind == "pypi" and spec.python is None
    assert spec.pip == ("IniConfig", "six==1.16.0")
    assert spec.requested_names == {"six", "iniconfig"}


@pytest.mark.parametrize(
    ("dep", "python"),
    [
        ("python", None),
        ("python=3.11", "3.11"),
        ("python==3.11.7", "3.11.7"),
        ("python>=3.10", ">=3.10"),
        ("python 3.12.*", "3.12"),
    ],
)
def test_python_requests(dep: str, python: str | None) -> None:
    assert parse_specification(f"dependencies: ['{dep}', {{pip: [six]}}]").python == python


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nfoo: bar\ndependencies: [six]", "unknown key(s) in specification: foo"),
        ("dependencies: {pip: [six]}", "'dependencies' must be a list"),
        ("dependencies: [{npm: [left-pad]}]", "may only be a 'pip:' list"),
        ("dependencies: [{pip: ['six @ https://evil/six.whl']}]", "direct references"),
        ("dependencies: [{pip: ['--index-url https://evil']}]", "pip options"),
        ("-r other.txt\n", "pip options such as '-r'"),
        ("six=1.0\n", "invalid requirement"),
        ("dependencies: ['numpy; rm -rf /']", "invalid conda dependency"),
        ("dependencies: ['python=abc', {pip: [six]}]", "invalid python version"),
        ("dependencies: []", "lists no packages"),
        ("channels: conda-forge\ndependencies: [six]", "'channels' must be a list"),
        ("variables: {'1bad': x}\ndependencies: [six]", "invalid variable name"),
        ("dependencies: [six\n", "not valid YAML at line"),
        ("!!python/object/apply:os.system ['echo pwned']", "YAML tag that is not allowed"),
        ("dependencies: [!!python/name:os.system x]", "YAML tag that is not allowed"),
        ("\x00six", "NUL"),
    ],
)
def test_bad_specs_are_refused_with_a_message_naming_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_specification(text)
    assert fragment in info.value.message


def test_I1_size_limit_at_its_edge() -> None:
    limits = SpecLimits(max_bytes=2048)
    text = "six\n" + "#" * (2048 - 5) + "\n"
    assert len(text.encode()) == 2048
    parse_specification(text, limits)
    with pytest.raises(PayloadTooLarge, match="max_spec_bytes"):
        parse_specification(text + "\n", limits)


def test_I2_package_count_limit_at_its_edge() -> None:
    limits = SpecLimits(max_packages=10)
    ten = "\n".join(f"pkg{i}" for i in range(10))
    assert len(parse_specification(ten, limits).pip) == 10
    with pytest.raises(LimitExceeded) as caught:
        parse_specification(ten + "\npkg10", limits)
    assert caught.value.message == (
        "specification lists 11 packages; the limit is 10 (max_packages)"
    )


def test_I2_package_count_message_reads_correctly_on_both_paths() -> None:
    """The count after parsing and the cheap count before it both read as one sentence."""
    flow = "dependencies: [" + ", ".join(f"pkg{i}" for i in range(10_000)) + "]"
    with pytest.raises(LimitExceeded) as caught:
        parse_specification(flow, SpecLimits(max_bytes=10**7))
    assert caught.value.message == (
        "specification lists 10000 packages; the limit is 500 (max_packages)"
    )
    block = "dependencies:\n" + "".join(f"  - pkg{i}\n" for i in range(10_000))
    with pytest.raises(LimitExceeded) as caught:
        parse_specification(block, SpecLimits(max_bytes=10**7))
    assert caught.value.message == (
        "specification lists more than 500 packages; the limit is 500 (max_packages)"
    )


def test_I2_ten_thousand_packages_are_refused_before_parsing() -> None:
    # Broken YAML and a NUL after the list: a refusal that names max_packages, and neither of
    # them, was made by the cheap count before any decoding or parsing (no clock involved).
    text = "dependencies:\n" + "".join(f"  - pkg{i}\n" for i in range(10_000)) + "  - [x\n\x00"
    with pytest.raises(LimitExceeded, match="max_packages"):
        parse_specification(text, SpecLimits(max_bytes=10**7))


def test_I3_alias_bomb_is_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    with pytest.raises(LimitExceeded, match="max_yaml_aliases"):
        parse_specification(bomb)


def test_I3_deep_nesting_is_refused() -> None:
    with pytest.raises(LimitExceeded, match="max_yaml_depth"):
        parse_specification("[" * 1000 + "]" * 1000)


def test_I3_aliases_at_the_limit_are_fine() -> None:
    text = "channels: &c [conda-forge]\ndependencies:\n  - six\n"
    assert parse_specification(text, SpecLimits(max_aliases=0)).channels == ("conda-forge",)
    with pytest.raises(LimitExceeded):
        parse_specification("x: &c six\ndependencies: [*c]\n", SpecLimits(max_aliases=0))


def test_virtual_packages_are_part_of_the_spec_and_its_hash() -> None:
    base = "channels: [conda-forge]\ndependencies: [pytorch]\n"
    plain = parse_specification(base)
    cuda = parse_specification(base + 'virtual_packages: {__cuda: "12.2", __glibc: null}\n')
    assert cuda.virtual_packages == {"__cuda": "12.2", "__glibc": None}
    assert cuda.to_dict()["virtual_packages"] == {"__cuda": "12.2", "__glibc": None}
    assert "virtual_packages" not in plain.to_dict()
    assert cuda.sha256 != plain.sha256
    assert cuda.with_name("x").virtual_packages == cuda.virtual_packages


@pytest.mark.parametrize(
    "block",
    [
        "virtual_packages: [__cuda]",
        "virtual_packages: {cuda: '12'}",
        "virtual_packages: {__cuda: '12; rm -rf /'}",
        "virtual_packages: {__cuda: {a: 1}}",
    ],
)
def test_bad_virtual_packages_are_refused(block: str) -> None:
    with pytest.raises(InvalidSpec, match="virtual"):
        parse_specification(f"channels: [conda-forge]\ndependencies: [pytorch]\n{block}\n")

"""I14: every match-spec form conda users write is accepted and normalised once; bad ones are
refused at parse time with a message naming them."""

from __future__ import annotations

import pytest
from rattler import MatchSpec

from envstore.core.matchspec import parse_match_spec
from envstore.core.specs import parse_specification
from envstore.errors import InvalidSpec

FORMS = [
    # (as written, name, solver form)
    ("app=1.0=0", "app", "app ==1.0 0"),  # what conda env export and our YAML artifact write
    ("python=3.11.7=0", "python", "python ==3.11.7 0"),
    ("numpy==1.26", "numpy", "numpy ==1.26"),
    ("numpy 1.26 py311_0", "numpy", "numpy ==1.26 py311_0"),
    ("conda-forge::numpy", "numpy", "conda-forge::numpy"),
    ("conda-forge::numpy=1.26=py311_0", "numpy", "conda-forge::numpy ==1.26 py311_0"),
    ("file:///srv/ch::app", "app", "file:///srv/ch::app"),
    ("numpy[version='>=1',build=py311*]", "numpy", "numpy >=1 py311*"),
    ("numpy=1.2.*", "numpy", "numpy 1.2.*"),
    ("numpy=1.2", "numpy", "numpy 1.2.*"),
    ("numpy>=1,<2", "numpy", "numpy >=1,<2"),
    ("numpy >=1.26", "numpy", "numpy >=1.26"),
    ("Numpy  >=1 ,<2", "numpy", "numpy >=1,<2"),
    ("python 3.11.*", "python", "python 3.11.*"),
    ("pip", "pip", "pip"),
]


@pytest.mark.parametrize(("written", "name", "solver"), FORMS)
def test_I14_every_conda_form_is_accepted_and_normalised(
    written: str, name: str, solver: str
) -> None:
    parsed = parse_match_spec(written)
    assert (parsed.name, parsed.solver_spec) == (name, solver)
    if "::" not in solver:  # the solver's strict parser takes the normal form as it is
        assert str(MatchSpec(solver, strict=True)) == solver


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("numpy >=>=1", "unable to parse version spec"),
        ("numpy; rm -rf /", "not a valid package name"),
        ("numpy[foo=bar]", "invalid bracket key"),
        ("numpy=1.2=0=1", "build string"),
        ("bad channel!::numpy", "bad channel"),
    ],
)
def test_I14_bad_match_specs_are_refused_naming_the_spec(bad: str, reason: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_specification(f"dependencies: [{bad!r}]".replace("'", '"'))
    assert f"invalid conda dependency {' '.join(bad.split())!r}" in caught.value.message
    assert reason in caught.value.message


def test_I14_exported_pins_of_a_conda_build_parse_and_keep_their_text() -> None:
    pinned = "name: sci\nchannels: [x]\ndependencies: [app=1.0=0, liba=2.0=0, python=3.11.7=0]"
    spec = parse_specification(pinned)
    assert spec.kind == "conda"
    assert spec.conda == ("app=1.0=0", "liba=2.0=0", "python=3.11.7=0")  # hash unchanged
    assert spec.match_specs == ("app ==1.0 0", "liba ==2.0 0", "python ==3.11.7 0")
    assert spec.requested_names == {"app", "liba", "python"}


@pytest.mark.parametrize(
    ("python", "request_"),
    [
        ("python=3.11.7=0", "3.11.7"),  # PyPI builds pick the interpreter from an exported pin
        ("python=3.11", "3.11"),
        ("python==3.11.7", "3.11.7"),
        ("python 3.11.*", "3.11"),
        ("python>=3.10,<3.12", ">=3.10,<3.12"),
        ("python", None),
    ],
)
def test_I14_python_line_gives_the_interpreter_request(python: str, request_: str | None) -> None:
    spec = parse_specification(f"dependencies: ['{python}', {{pip: [six==1.16.0]}}]")
    assert spec.kind == "pypi"
    assert spec.python == request_


def test_I14_python_alternatives_are_refused_for_a_pypi_build() -> None:
    with pytest.raises(InvalidSpec, match="invalid python version"):
        parse_specification("dependencies: ['python 3.10.*|3.11.*', {pip: [six]}]")
    # a conda solver understands alternatives: only a PyPI build needs one interpreter
    assert parse_specification("dependencies: ['python 3.10.*|3.11.*', numpy]").kind == "conda"


def test_I14_a_spec_channel_name_uses_the_server_alias() -> None:
    from envstore.backends.conda import solver_specs

    specs = parse_specification(
        "channels: [x]\ndependencies: ['conda-forge::numpy=1.26=py311_0', "
        "'file:///srv/ch::app', 'conda-forge/linux-64::numpy']"
    ).match_specs
    assert solver_specs(specs, "https://mirror.example/") == [
        "conda-forge/linux-64::numpy",  # name/subdir: rattler reads it itself
        "https://mirror.example/conda-forge/::numpy ==1.26 py311_0",
        "file:///srv/ch::app",
    ]

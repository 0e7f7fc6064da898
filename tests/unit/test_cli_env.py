"""Local input handling of ``envstore env create``: naming, dates and spec files."""

from __future__ import annotations

from pathlib import Path

import pytest

from envstore.cli.common import parse_env, parse_selector_ref, parse_status
from envstore.cli.env import environment_name_for, read_spec_file, valid_as_of
from envstore.errors import InvalidInput, InvalidName


def test_explicit_name_wins_over_yaml_name(tmp_path: Path) -> None:
    text = "name: from-yaml\ndependencies: [python]\n"
    assert environment_name_for(text, tmp_path / "environment.yaml", "explicit") == "explicit"


def test_yaml_name_wins_over_file_stem(tmp_path: Path) -> None:
    text = "name: from-yaml\ndependencies: [python]\n"
    assert environment_name_for(text, tmp_path / "environment.yaml", None) == "from-yaml"


def test_requirements_file_is_named_after_its_stem(tmp_path: Path) -> None:
    text = "# pinned\nsix==1.16.0\niniconfig==2.0.0\n"
    assert environment_name_for(text, tmp_path / "data-tools.txt", None) == "data-tools"


def test_unparseable_yaml_falls_back_to_stem(tmp_path: Path) -> None:
    assert environment_name_for("name: [unclosed\n", tmp_path / "broken.yml", None) == "broken"


def test_invalid_resulting_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidName):
        environment_name_for("name: ../etc\ndependencies: [x]\n", tmp_path / "e.yml", None)


def test_spec_file_errors_are_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        read_spec_file(tmp_path / "missing.yml")
    with pytest.raises(InvalidInput, match="is a directory"):
        read_spec_file(tmp_path)
    binary = tmp_path / "blob.yml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_spec_file(binary)


def test_spec_text_is_returned_unchanged(tmp_path: Path) -> None:
    spec = tmp_path / "requirements.txt"
    spec.write_text("six==1.16.0  # keep\n\niniconfig\n")
    assert read_spec_file(spec) == "six==1.16.0  # keep\n\niniconfig\n"


@pytest.mark.parametrize(
    "value", ["2020-01-01", "2022-05-31T12:00:00", "2022-05-31T12:00:00+02:00"]
)
def test_as_of_accepts_dates_and_datetimes_unchanged(value: str) -> None:
    assert valid_as_of(value) == value


@pytest.mark.parametrize("value", ["yesterday", "2020-13-01", "01/02/2020"])
def test_as_of_refuses_other_text(value: str) -> None:
    with pytest.raises(InvalidInput, match="--as-of"):
        valid_as_of(value)


def test_selector_is_passed_through_as_typed() -> None:
    ref, selector = parse_selector_ref("alice/science@2022-05-31")
    assert (ref.namespace, ref.name, selector) == ("alice", "science", "2022-05-31")
    assert parse_selector_ref("alice/science")[1] == ""
    assert parse_selector_ref("alice/science@12")[0].build_id == 12


def test_plain_env_reference_refuses_a_selector() -> None:
    assert parse_env("alice/science").name == "science"
    with pytest.raises(InvalidInput, match="without '@3'"):
        parse_env("alice/science@3")


def test_status_filter_is_case_insensitive_and_checked() -> None:
    assert parse_status("failed") == "FAILED"
    assert parse_status(None) is None
    with pytest.raises(InvalidInput, match="QUEUED, BUILDING"):
        parse_status("done")

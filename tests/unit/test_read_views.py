"""Read models are filled by position: each selected column list follows its tuple's fields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envstore.services import views


def _keys(columns: Iterable[Any], prefix: str = "") -> list[str]:
    return [str(column.key).removeprefix(prefix) for column in columns]


def test_build_columns_follow_the_fields() -> None:
    summary = _keys(views._BUILD_SUMMARY_COLUMNS)
    assert summary == list(views.BuildSummary._fields)
    names = _keys(views._NAMES)
    pack = _keys(views._PACK_COLUMNS)
    policy = _keys(views._POLICY_COLUMNS)
    fields = [*summary, *names, "specification", "artifacts", *pack, *policy]
    assert fields == list(views.BuildView._fields)
    spec = _keys(views._SPECIFICATION_COLUMNS, "specification_")
    assert spec == list(views.SpecificationView._fields)


def test_environment_columns_follow_the_fields() -> None:
    environment = _keys(views._ENVIRONMENT_COLUMNS)
    assert [*environment, "current_build"] == list(views.EnvironmentView._fields)


def test_package_columns_follow_the_fields() -> None:
    package = _keys(views._PACKAGE_COLUMNS)
    channel = _keys(views._CHANNEL_COLUMNS, "channel_")
    assert channel == list(views.ChannelView._fields)
    assert [package[0], "channel", *package[1 + len(channel) :]] == list(views.PackageView._fields)

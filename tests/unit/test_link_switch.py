"""The environment link that a publish switches inside its transaction is put back when that
transaction does not commit (the build was not recorded, so the link must not show it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from envstore.jobs.executor import _LinkSwitch
from envstore.storage.layout import StoreLayout


def _switch(layout: StoreLayout, key: str) -> _LinkSwitch:
    executor: Any = SimpleNamespace(layout=layout)
    claimed: Any = SimpleNamespace(namespace="team", environment="web", build_key=key)
    return _LinkSwitch(executor, claimed)


def _made(layout: StoreLayout, key: str) -> Path:
    prefix = layout.prefix("team", key)
    prefix.mkdir(parents=True)
    return prefix


def test_a_switch_that_is_not_committed_puts_the_previous_build_back(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path / "envs")
    old, new = _made(layout, "k1-1-web"), _made(layout, "k2-2-web")
    layout.publish("team", "web", "k1-1-web")
    link = layout.link("team", "web")
    switch = _switch(layout, "k2-2-web")
    switch.switch()
    switch.switch()  # a replayed transaction switches again: the first previous target counts
    assert link.resolve() == new.resolve()
    switch.restore()
    assert link.resolve() == old.resolve()
    assert [p.name for p in link.parent.iterdir()] == ["web"]  # no temporary link left


def test_a_first_build_that_is_not_committed_leaves_no_link(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path / "envs")
    _made(layout, "k1-1-web")
    switch = _switch(layout, "k1-1-web")
    switch.switch()
    assert layout.link("team", "web").is_symlink()
    switch.restore()
    assert not layout.link("team", "web").is_symlink()
    switch.restore()  # twice is harmless


def test_a_link_that_is_not_ours_is_reported_not_replaced(tmp_path: Path) -> None:
    layout = StoreLayout(tmp_path / "envs")
    _made(layout, "k1-1-web")
    layout.link("team", "web").mkdir(parents=True)  # a directory someone left there
    switch = _switch(layout, "k1-1-web")
    switch.switch()
    assert switch.problem is not None and "not an environment link" in switch.problem
    switch.restore()
    assert layout.link("team", "web").is_dir()

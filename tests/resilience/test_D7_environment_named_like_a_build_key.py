"""RELIABILITY.md D7: an environment named like another build's key (or directory).

Build prefixes live in ``<store>/builds/<ns>/`` and environment links in ``<store>/envs/<ns>/``,
so the two cannot collide; publishing only ever replaces envstore's own links, and deleting an
environment answers 2xx/4xx, never 500. Stores made before that layout (prefixes beside the
links) keep working.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envstore.errors import Conflict
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, submit


def _build(client: object, build_id: int) -> dict[str, object]:
    return client.get(f"/api/v1/build/{build_id}/").json()["data"]  # type: ignore[attr-defined,no-any-return]


def test_D7_environment_named_like_another_builds_key(settings: Settings) -> None:
    client = client_for(settings)
    first = submit(client, name="app")
    complete(client, first)
    key = str(_build(client, first)["build_key"])
    clash = submit(client, "six==1.15.0\n", name=key)  # a valid name: it must not collide
    complete(client, clash, "1.15.0")
    ours, theirs = _build(client, first), _build(client, clash)
    assert ours["status"] == theirs["status"] == "COMPLETED"
    envs, builds = settings.envs_dir / "default", settings.store_dir / "builds" / "default"
    assert (envs / "app").resolve() == (builds / key).resolve()
    assert (builds / key).is_dir() and not (builds / key).is_symlink()
    assert (envs / key).resolve() == (builds / str(theirs["build_key"])).resolve()
    assert ours["prefix"] == str(builds / key) and Path(str(ours["prefix"])).is_dir()
    assert [p.name for p in envs.iterdir() if p.name.endswith(".tmp")] == []
    app = client.get("/api/v1/environment/default/app/").json()["data"]
    assert app["current_build_id"] == first
    assert client.delete(f"/api/v1/environment/default/{key}/").status_code == 200
    assert (builds / key).is_dir()  # the other environment's build is untouched
    assert (envs / "app").resolve() == (builds / key).resolve()
    assert client.delete("/api/v1/environment/default/app/").status_code == 200


def test_D7_publishing_never_replaces_what_envstore_did_not_link(settings: Settings) -> None:
    """An older store kept prefixes in ``envs/<ns>/``: a directory there named like a new
    environment is neither followed nor replaced; rollback says so (409), delete is a 2xx."""
    client = client_for(settings)
    first = submit(client, name="old")
    complete(client, first)
    blocker = settings.envs_dir / "default" / "taken"
    blocker.mkdir(parents=True)
    (blocker / "bin").mkdir()
    build = submit(client, name="taken")
    with pytest.raises(Conflict, match="is not an environment link"):
        complete(client, build)  # links as the worker does (which logs this in the build log)
    answer = client.put("/api/v1/environment/default/taken/", json={"build_id": build})
    assert answer.status_code == 409 and "not an environment link" in answer.json()["message"]
    assert (blocker / "bin").is_dir() and not blocker.is_symlink()
    assert client.delete("/api/v1/environment/default/taken/").status_code == 200
    assert (blocker / "bin").is_dir()


def test_D7_builds_of_an_older_store_are_still_found_linked_and_collected(
    settings: Settings,
) -> None:
    client = client_for(settings)
    build = submit(client, name="legacy")
    complete(client, build)
    key = str(_build(client, build)["build_key"])
    new = settings.store_dir / "builds" / "default" / key
    old = settings.envs_dir / "default" / key
    new.rename(old)  # where a store made before the two trees kept it
    state = client.app.state.envstore  # type: ignore[attr-defined]
    state.layout.publish("default", "legacy", key)
    assert (settings.envs_dir / "default" / "legacy").resolve() == old.resolve()
    assert os.readlink(settings.envs_dir / "default" / "legacy") == key  # relative, as before
    state.layout.remove_prefix("default", key)
    assert not old.exists()

"""Repodata kept in memory across the builds of a runner (``backends.conda_repodata``)."""

from __future__ import annotations

from pathlib import Path

import rattler

from envstore.backends.channels import make_client
from envstore.backends.conda import solve_records
from envstore.backends.conda_repodata import gateway_for
from envstore.testing.channels import ChannelBuilder


def _solve(channel: ChannelBuilder, cache: Path) -> dict[str, str]:
    records = solve_records(
        [channel.url],
        ["app"],
        "noarch",
        cache_dir=str(cache),
        as_of=None,
        timeout=60,
        virtual_packages=None,
        log=lambda _line: None,
    )
    return {r.name.normalized: str(r.version) for r in records}


def test_a_local_channel_updated_between_two_solves_is_read_again(tmp_path: Path) -> None:
    channel = ChannelBuilder(tmp_path / "channel")
    channel.add("lib", "1.0")
    channel.add("app", "1.0", deps=["lib"])
    channel.index()
    cache = tmp_path / "repodata"
    assert _solve(channel, cache) == {"app": "1.0", "lib": "1.0"}
    channel.add("lib", "2.0")
    channel.index()
    assert _solve(channel, cache) == {"app": "1.0", "lib": "2.0"}


def test_the_gateway_is_kept_while_the_cache_dir_and_client_are_the_same(tmp_path: Path) -> None:
    channel = ChannelBuilder(tmp_path / "channel")
    channel.add("app", "1.0")
    channel.index()
    client = make_client({})
    first = gateway_for(tmp_path / "a", client, [channel.url], ["noarch"])
    assert gateway_for(tmp_path / "a", client, [channel.url], ["noarch"]) is first
    assert gateway_for(tmp_path / "b", client, [channel.url], ["noarch"]) is not first
    # another client (other credentials) never sees a gateway made with the first one
    other = gateway_for(tmp_path / "a", rattler.Client(), [channel.url], ["noarch"])
    assert other is not first

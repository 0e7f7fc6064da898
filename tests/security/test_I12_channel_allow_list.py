"""RELIABILITY.md I12 (and issue 13 item 11): channel URLs are checked against the server's
allow-list (``ENVSTORE_CHANNEL_ALLOW``) at submit, naming the channel and the rule; bad channel
names are refused there too; fetch errors are summarised without echoing what was fetched."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from envstore.backends.conda_policy import unreachable
from envstore.core.channels import ChannelRules
from envstore.errors import InvalidSpec
from envstore.settings import Settings, load_settings
from tests.integration.helpers import client_for

REFUSED = [
    ("file:///etc", "ENVSTORE_CHANNEL_ALLOW"),
    ("http://169.254.169.254/", "ENVSTORE_CHANNEL_ALLOW"),
    ("http://127.0.0.1:8080/", "ENVSTORE_CHANNEL_ALLOW"),
    ("https://127.0.0.1:8443/ch", "local or internal address"),
    ("https://169.254.169.254/latest", "local or internal address"),
    ("https://[::1]/ch", "local or internal address"),
    ("https://10.1.2.3/ch", "local or internal address"),
    ("https://localhost/ch", "local or internal address"),
    ("ftp://x/", "unsupported scheme 'ftp'"),
    ("defaults", "'defaults' is ambiguous"),
    ("../../x", "invalid channel name '../../x'"),
    ("https://repo.example.org/a/../b", "'..' segments"),
]


@pytest.mark.parametrize(("channel", "rule"), REFUSED)
def test_I12_default_rules_refuse_internal_and_odd_channels(channel: str, rule: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        ChannelRules().url(channel)
    assert rule in str(refused.value)
    assert channel in str(refused.value) or channel.startswith("../")


def test_I12_default_rules_allow_https_and_names() -> None:
    rules = ChannelRules()
    assert rules.url("conda-forge") == "https://conda.anaconda.org/conda-forge/"
    assert rules.url("https://Repo.Example.org/x") == "https://repo.example.org/x/"


def test_I12_entries_allow_a_root_a_host_or_a_host_and_port_and_nothing_beside() -> None:
    rules = ChannelRules(allow=("file:///srv/channels", "http://mirror.lan", "https://h:8443/c"))
    assert rules.url("file:///srv/channels/local") == "file:///srv/channels/local/"
    assert rules.url("http://mirror.lan:9000/x") == "http://mirror.lan:9000/x/"
    assert rules.url("https://h:8443/c/sub") == "https://h:8443/c/sub/"
    for outside in (
        "file:///srv/channels-evil/x",  # a sibling whose name starts like the root
        "file:///etc",
        "http://mirror.lan.evil.example/x",
        "https://h:9443/c/sub",
        "https://h:8443/other",
        "https://conda.example.org/x",  # https:// is no longer in the list
    ):
        with pytest.raises(InvalidSpec, match="not allowed"):
            rules.url(outside)


def test_I12_a_bad_allow_list_stops_the_server_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="ENVSTORE_CHANNEL_ALLOW"):
        load_settings(store_dir=settings.store_dir, channel_allow=["gopher://x"])


def _submit(client: TestClient, channels: list[str]) -> tuple[int, str]:
    text = "channels: " + repr(channels) + "\ndependencies: [app]\n"
    answer = client.post(
        "/api/v1/specification/", json={"specification": text, "environment_name": "ch"}
    )
    return answer.status_code, str(answer.json().get("message"))


@pytest.mark.parametrize(("channel", "rule"), REFUSED)
def test_I12_submit_refuses_a_channel_outside_the_allow_list(
    settings: Settings, channel: str, rule: str
) -> None:
    client = client_for(settings.model_copy(update={"channel_allow": ["https://"]}))
    status, message = _submit(client, ["conda-forge", channel])
    assert status == 400 and rule in message
    listed = client.get("/api/v1/build/").json()["count"]
    assert listed == 0  # nothing was queued


def test_I12_solve_only_and_lockfiles_are_checked_too(settings: Settings) -> None:
    client = client_for(settings.model_copy(update={"channel_allow": ["https://"]}))
    solve = client.get("/api/v1/specification/", params={"channel": "file:///etc", "conda": "x"})
    assert solve.status_code == 400 and "ENVSTORE_CHANNEL_ALLOW" in solve.json()["message"]
    lock = """version: 1
metadata: {platforms: [linux-64], channels: [{url: "https://conda.anaconda.org/conda-forge/"}]}
package:
- name: evil
  version: "1"
  manager: conda
  platform: linux-64
  url: http://169.254.169.254/latest/evil-1-0.conda
  hash: {sha256: 8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254}
"""
    answer = client.post(
        "/api/v1/specification/",
        json={"specification": lock, "environment_name": "lk", "is_lockfile": True},
    )
    assert answer.status_code == 400, answer.text
    assert "169.254.169.254" in answer.json()["message"]


def test_I12_an_unreachable_channel_is_summarised_without_what_came_back() -> None:
    failure = unreachable(
        ["file:///srv/channels/x/"],
        RuntimeError("failed to open /etc/noarch/repodata.json: <html>secret body</html>"),
    )
    assert failure.reason == "channel_unreachable"
    assert failure.message == "cannot reach channel file:///srv/channels/x/"


@pytest.mark.parametrize(
    "dependency", ["file:///etc::x", "http://169.254.169.254/::x", "http://127.0.0.1:9/c::x >=1"]
)
def test_I12_a_channel_named_inside_a_dependency_is_checked_too(
    settings: Settings, dependency: str
) -> None:
    # ``channel::name`` is a channel as much as ``channels:`` is: the same allow-list applies.
    client = client_for(settings.model_copy(update={"channel_allow": ["https://"]}))
    text = f"channels: [conda-forge]\ndependencies: [{dependency!r}]\n"
    answer = client.post(
        "/api/v1/specification/", json={"specification": text, "environment_name": "dep"}
    )
    assert answer.status_code == 400, answer.text
    assert "ENVSTORE_CHANNEL_ALLOW" in answer.json()["message"]
    solve = client.get(
        "/api/v1/specification/", params={"channel": "conda-forge", "conda": dependency}
    )
    assert solve.status_code == 400 and "ENVSTORE_CHANNEL_ALLOW" in solve.json()["message"]
    assert client.get("/api/v1/build/").json()["count"] == 0

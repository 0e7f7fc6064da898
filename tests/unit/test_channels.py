"""Channel URL handling: one canonical URL per channel, credentials never shown."""

from __future__ import annotations

import pytest

from envstore.backends.channels import (
    auth_header,
    channel_for_url,
    channel_url,
    channel_urls,
    redact,
)
from envstore.errors import InvalidSpec

ALIAS = "https://conda.anaconda.org/"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("conda-forge", "https://conda.anaconda.org/conda-forge/"),
        ("bioconda/label/dev", "https://conda.anaconda.org/bioconda/label/dev/"),
        ("https://Mirror.Example.org//conda-forge/", "https://mirror.example.org/conda-forge/"),
        ("file:///srv/channels/local", "file:///srv/channels/local/"),
        ("  conda-forge  ", "https://conda.anaconda.org/conda-forge/"),
    ],
)
def test_channel_url_is_canonical(given: str, expected: str) -> None:
    assert channel_url(given, ALIAS) == expected


def test_names_resolve_against_the_configured_alias() -> None:
    assert (
        channel_url("internal", "https://mirror.corp/conda")
        == "https://mirror.corp/conda/internal/"
    )


@pytest.mark.parametrize(
    "bad",
    ["defaults", "ftp://host/ch", "https:///nohost", "https://h/ch?x=1", "https://h/a/../b", "a b"],
)
def test_unusable_channels_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSpec):
        channel_url(bad, ALIAS)


def test_duplicates_collapse_in_order() -> None:
    urls = channel_urls(
        ["conda-forge", "bioconda", "https://conda.anaconda.org/conda-forge"], ALIAS
    )
    assert urls == [
        "https://conda.anaconda.org/conda-forge/",
        "https://conda.anaconda.org/bioconda/",
    ]


def test_package_url_maps_to_the_longest_channel() -> None:
    channels = ["https://c.org/conda-forge/", "https://c.org/conda-forge/label/dev/"]
    url = "https://c.org/conda-forge/label/dev/noarch/x-1-0.conda"
    assert channel_for_url(url, channels) == "https://c.org/conda-forge/label/dev/"
    assert channel_for_url("https://other.org/x.conda", channels) is None


def test_redact_removes_credentials_and_tokens() -> None:
    assert redact("https://user:secret@repo.org/t/abc123/ch/") == "https://repo.org/t/<token>/ch/"
    assert "secret" not in redact("https://secret@repo.org/ch/")


def test_auth_header_picks_the_longest_prefix() -> None:
    creds = {
        "https://repo.example/": {"token": "wide"},
        "https://repo.example/private/": {"username": "u", "password": "p"},
    }
    assert auth_header("repo.example", "/public/noarch/x", creds) == {
        "Authorization": "Bearer wide"
    }
    assert auth_header("repo.example", "/private/noarch/x", creds) == {
        "Authorization": "Basic dTpw"
    }
    assert auth_header("other.example", "/private/noarch/x", creds) is None
    assert auth_header("repo.example", "/privateer/x", {"https://repo.example/private": {}}) is None

"""``envstore login`` keeps tokens per server URL in a file only the owner can read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from envstore.cli.credentials import forget_token, store_token, stored_token, token_file


def test_tokens_are_kept_per_url_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = store_token("http://a:8080/", "envs_a")
    store_token("http://b:8080", "envs_b")
    assert path == token_file() == tmp_path / "envstore" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_token("http://a:8080") == "envs_a"
    assert stored_token("http://b:8080/") == "envs_b"
    assert stored_token("http://c:8080") is None
    assert forget_token("http://a:8080") and stored_token("http://a:8080") is None
    assert not forget_token("http://a:8080")

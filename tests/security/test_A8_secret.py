"""A8: a server started with a default (or empty) secret outside development mode refuses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from envstore.auth.secret import InsecureSecret, resolve_secret
from envstore.settings import load_settings

ENVSTORE = str(Path(sys.executable).parent / "envstore")


@pytest.mark.parametrize("secret", ["", "changeme", "conda-store", "short"])
def test_A8_serve_refuses_a_default_secret(tmp_path: Path, secret: str) -> None:
    env = {**os.environ, "ENVSTORE_STORE_DIR": str(tmp_path / "store"), "ENVSTORE_SECRET": secret}
    env.pop("ENVSTORE_DEVELOPMENT_MODE", None)
    result = subprocess.run(
        [ENVSTORE, "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ENVSTORE_SECRET" in result.stderr and "known default" in result.stderr
    assert "Traceback" not in result.stderr


def test_A8_development_mode_allows_a_default_secret(tmp_path: Path) -> None:
    settings = load_settings(store_dir=tmp_path, secret="changeme", development_mode=True)
    assert resolve_secret(settings) == "changeme"
    with pytest.raises(InsecureSecret):
        resolve_secret(load_settings(store_dir=tmp_path, secret="changeme"))


def test_A8_embedded_default_generates_a_private_secret_once(tmp_path: Path) -> None:
    settings = load_settings(store_dir=tmp_path)
    first = resolve_secret(settings)
    path = settings.state_dir / "secret"
    assert len(first) >= 32 and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_secret(settings) == first
    assert resolve_secret(load_settings(store_dir=tmp_path / "other")) != first

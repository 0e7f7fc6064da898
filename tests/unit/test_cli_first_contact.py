"""Issue 15 items 5, 6 and 12: what a new user meets first on the CLI.

``login`` without a terminal, the URL ``serve`` tells users to sign in to, tokens kept for the
loopback under any spelling, and help output that shows flags as flags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from envstore.cli.client import anonymous_hint
from envstore.cli.credentials import forget_token, store_token, stored_token
from envstore.cli.main import app, run_cli
from envstore.cli.server import login_hint

ENVSTORE = str(Path(sys.executable).parent / "envstore")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["login", "--username", "me"],
            "envstore: error: no terminal to ask for the password: pass --password-stdin and "
            "the password on standard input (or --token)",
        ),
        (["login"], "envstore: error: no terminal to ask for the user name: pass --username NAME"),
        (
            ["login", "--username", "me", "--password-stdin"],
            "envstore: error: --password-stdin: standard input holds no password",
        ),
    ],
)
def test_login_without_a_terminal_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """No GetPassWarning, no "interrupted": nothing can be asked, so it is bad input."""
    result = subprocess.run(
        [ENVSTORE, "--url", "http://127.0.0.1:9", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (2, message + "\n", "")


@pytest.mark.parametrize(
    ("host", "port", "prefix", "command"),
    [
        ("127.0.0.1", 8080, "/", "envstore login --username NAME --password-stdin"),
        ("0.0.0.0", 8080, "", "envstore login --username NAME --password-stdin"),
        (
            "127.0.0.1",
            9000,
            "/envstore",
            "envstore --url http://localhost:9000/envstore login --username NAME --password-stdin",
        ),
        (
            "10.1.2.3",
            8080,
            "/",
            "envstore --url http://10.1.2.3:8080 login --username NAME --password-stdin",
        ),
    ],
)
def test_serve_hint_names_the_url_the_cli_uses(
    host: str, port: int, prefix: str, command: str
) -> None:
    assert login_hint(host, port, prefix) == command


def test_a_token_kept_for_127_0_0_1_is_found_for_localhost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    store_token("http://127.0.0.1:8080/", "envs_loop")
    assert stored_token("http://localhost:8080") == "envs_loop"
    assert stored_token("HTTP://LOCALHOST:8080/") == "envs_loop"
    assert stored_token("http://[::1]:8080") == "envs_loop"
    assert stored_token("http://localhost:8081") is None  # another port is another server
    assert stored_token("http://10.0.0.1:8080") is None
    # the file keeps the URL as given, one token per server whatever its spelling
    assert json.loads((tmp_path / "envstore" / "token").read_text()) == {
        "http://127.0.0.1:8080": "envs_loop"
    }
    store_token("http://localhost:8080", "envs_new")
    assert json.loads((tmp_path / "envstore" / "token").read_text()) == {
        "http://localhost:8080": "envs_new"
    }
    assert forget_token("http://127.0.0.1:8080") and stored_token("http://localhost:8080") is None


def test_anonymous_hint_omits_url_only_for_the_default() -> None:
    assert anonymous_hint("http://localhost:8080/") == (
        "you are anonymous (no token kept for http://localhost:8080); sign in with: "
        "envstore login --username NAME --password-stdin"
    )
    assert "envstore --url http://h:1 login" in anonymous_hint("http://h:1")


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_help_shows_no_bool_type_for_flags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for path in _commands(get_command(app)):
        assert run_cli([*path, "--help"]) == 0
        out = capsys.readouterr().out
        assert "--help" in out
        assert "<bool>" not in out, f"envstore {' '.join(path)} --help:\n{out}"

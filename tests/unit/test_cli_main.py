"""Exit codes and one-line errors of the whole CLI for input refused before any request.

None of these cases opens a socket: local validation runs before the client is created.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envstore.cli.main import run_cli


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = run_cli(["--url", "http://127.0.0.1:9", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["env", "show", "../x/y"], "namespace '..'"),
        (["env", "show", "justaname"], "is not of the form NAMESPACE/NAME"),
        (["lockfile", "alice/sci@../../etc"], "build key"),
        (["run", "alice/sci@bad key", "--", "true"], "build key"),
        (["env", "rollback", "alice/sci@2", "1"], "without '@2'"),
        (["build", "list", "--status", "done"], "unknown build status"),
        (["build", "list", "--env", "nope"], "NAMESPACE/NAME"),
        (["env", "create", "-f", "/nonexistent/env.yml"], "no such file"),
        (["env", "create", "-f", "/nonexistent/env.yml", "-n", "../x"], "no such file"),
        (["build", "show", "abc"], "Invalid value for 'ID'"),
        (["env", "create"], "Missing option"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    code, err = _run(capsys, *args)
    assert code == 2
    assert fragment in err
    assert err.startswith("envstore: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_as_of_and_name_are_refused_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "requirements.txt"
    spec.write_text("six==1.16.0\n")
    assert _run(capsys, "env", "create", "-f", str(spec), "--as-of", "last week")[0] == 2
    code, err = _run(capsys, "env", "create", "-f", str(spec), "--name", "-bad")
    assert code == 2
    assert "environment name '-bad'" in err


def test_run_without_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "run", "alice/sci")
    assert code == 2
    assert "Missing argument '-- CMD...'" in err


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out.startswith("envstore ")
    assert run_cli(["env", "create", "--help"]) == 0
    assert "--as-of" in capsys.readouterr().out

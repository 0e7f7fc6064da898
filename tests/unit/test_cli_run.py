"""``envstore run`` on this host: activation of a prefix and the exit code of the command."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from envstore.cli.run import activated_environ, local_prefix, run_in_prefix
from envstore.errors import Conflict, InvalidInput


def _build(prefix: Path | str, **extra: object) -> dict[str, object]:
    return {"id": 4, "status": "COMPLETED", "prefix": str(prefix), **extra}


def _prefix_with_script(tmp_path: Path, body: str) -> Path:
    prefix = tmp_path / "envs" / "alice" / "key-4-science"
    (prefix / "bin").mkdir(parents=True)
    script = prefix / "bin" / "probe"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return prefix


def test_activation_puts_bin_first_and_sets_both_prefix_variables(tmp_path: Path) -> None:
    build = _build(tmp_path, specification={"spec": {"variables": {"MY_FLAG": "1", "PATH_X": 2}}})
    base = {"PATH": "/usr/bin", "PYTHONHOME": "/elsewhere", "HOME": "/home/a"}
    environ = activated_environ(tmp_path, build, base)
    assert environ["PATH"] == f"{tmp_path / 'bin'}{os.pathsep}/usr/bin"
    assert environ["VIRTUAL_ENV"] == environ["CONDA_PREFIX"] == str(tmp_path)
    assert environ["MY_FLAG"] == "1"
    assert environ["PATH_X"] == "2"
    assert "PYTHONHOME" not in environ
    assert environ["HOME"] == "/home/a"


def test_prefix_missing_on_this_host_names_the_archive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        local_prefix(_build(tmp_path / "not-here"))
    assert caught.value.message == (
        "build 4 is not on this host; downloading it needs the archive artifact"
    )


def test_unfinished_build_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(Conflict, match="build 4 is FAILED"):
        local_prefix({"id": 4, "status": "FAILED", "prefix": str(tmp_path)})


def test_command_runs_activated_and_its_exit_code_is_propagated(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    prefix = _prefix_with_script(tmp_path, 'echo "$VIRTUAL_ENV|$GREETING"\nexit 7\n')
    build = _build(prefix, specification={"spec": {"variables": {"GREETING": "hi"}}})
    assert run_in_prefix(local_prefix(build), build, ["probe"]) == 7
    assert capfd.readouterr().out.strip() == f"{prefix}|hi"


def test_signal_death_is_reported_like_a_shell(tmp_path: Path) -> None:
    prefix = _prefix_with_script(tmp_path, "kill -TERM $$\n")
    assert run_in_prefix(prefix, _build(prefix), ["probe"]) == 128 + signal.SIGTERM


def test_unknown_command_is_one_line(tmp_path: Path) -> None:
    prefix = _prefix_with_script(tmp_path, "exit 0\n")
    with pytest.raises(InvalidInput, match="no-such-tool-xyz: command not found"):
        run_in_prefix(prefix, _build(prefix), ["no-such-tool-xyz"])

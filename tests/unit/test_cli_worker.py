"""``envstore worker`` refuses bad input with one line and exit code 2, before any connection."""

from __future__ import annotations

import pytest

from envstore.cli.main import run_cli


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--queues", "builds,bogus"], {"ENVSTORE_BROKER_URL": "redis://127.0.0.1:9/0"}, "bogus"),
        (["--queues", ","], {"ENVSTORE_BROKER_URL": "redis://127.0.0.1:9/0"}, "unknown job"),
        ([], {}, "needs ENVSTORE_BROKER_URL"),
        (["--concurrency", "0"], {}, "greater than or equal to 1"),
        (["--concurrency", "65"], {}, "less than or equal to 64"),
    ],
)
def test_worker_refuses_bad_input(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    fragment: str,
) -> None:
    monkeypatch.delenv("ENVSTORE_BROKER_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = run_cli(["worker", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err and "Traceback" not in err

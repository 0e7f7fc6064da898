"""What an API process loads at start (issue 11: idle RSS of ``envstore serve`` under 150 MB).

The build runner's native library (py-rattler), boto3 without S3, Celery without a broker,
Alembic after the schema check and the client commands are imported where they are used, not
when the app is made: each is megabytes in every API process. A fresh interpreter makes the
app as ``envstore serve`` does and lists its modules; an eager import anywhere on the way
brings one back and fails this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Imported by the first process (``envstore serve``: the ``envstore`` command, the embedded
# workers) and by the extra ones (``python -m envstore.cli.server``, API only), as they start.
_PROBE = """
import sys
if sys.argv[1] == "first":
    import envstore.cli.main
else:
    import envstore.cli.server
from envstore.api.app import create_app
from envstore.settings import load_settings
create_app(load_settings(), start_workers=sys.argv[1] == "first")
print("\\n".join(sorted(sys.modules)))
"""

# modules no API process needs before the request that uses them
_NEVER_AT_START = ("rattler", "boto3", "botocore", "celery", "kombu", "billiard", "amqp")
# and those that only the first process needs (the command line, the schema check)
_NOT_IN_EXTRA_PROCESSES = ("alembic", "mako", "httpx", "rich", "pygments", "envstore.cli.main")


def _modules_at_start(store: Path, process: str) -> set[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENVSTORE_")}
    env["ENVSTORE_STORE_DIR"] = str(store)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, process],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(done.stdout.split())


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


@pytest.mark.parametrize("process", ["first", "extra"])
def test_api_process_starts_without_build_or_broker_libraries(tmp_path: Path, process: str) -> None:
    modules = _modules_at_start(tmp_path / "store", process)
    assert "envstore.api.app" in modules  # the probe made the app
    assert _loaded(modules, _NEVER_AT_START) == []


def test_extra_api_process_holds_no_command_line_or_migrations(tmp_path: Path) -> None:
    modules = _modules_at_start(tmp_path / "store", "extra")
    assert _loaded(modules, _NOT_IN_EXTRA_PROCESSES) == []

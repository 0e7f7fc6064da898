"""Browser tests of the web UI: Playwright for Python driving Debian's chromium.

Playwright's own browser download is not reachable here, so the tests launch
``/usr/bin/chromium``; without it they skip locally and *fail* under ``CI=true`` (``.ci/run``
installs it). The server is a real ``envstore serve`` with real builds from a generated conda
channel (``envstore.testing.demo_channel``): nothing is faked behind the pages.

Set ``ENVSTORE_UI_SCREENSHOTS=docs/screenshots`` to write the README's screenshots from the
journey (1280x800, light).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envstore.testing import ChannelBuilder, demo_channel
from tests.support.server import ENVSTORE, ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
PASSWORDS = {"root": "pw-root-1234", "alice": "pw-alice-1234", "bob": "pw-bob-1234"}


# Module scope, not session: Playwright's sync API runs an event loop in this thread while it
# is open, and every later test that calls asyncio.run() (indexing a conda channel) would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is required in CI (.ci/run installs it with apt-get)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelBuilder:
    # Indexing runs an asyncio loop, and Playwright's sync API owns the one of this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(demo_channel, tmp_path_factory.mktemp("ui-channel")).result()


def add_user(server: ServerProcess, name: str, *, admin: bool = False) -> None:
    args = [ENVSTORE, "user", "add", name, "--password-stdin", *(["--admin"] if admin else [])]
    subprocess.run(
        args,
        input=PASSWORDS[name] + "\n",
        env={**server.env},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A closed server (anonymous sees nothing) with an admin, alice and bob."""
    root = tmp_path_factory.mktemp("ui-server")
    env = {"ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}", "ENVSTORE_URL_PREFIX": "/store"}
    process = ServerProcess(root / "store", env=env)
    process.url += "/store"  # every link, asset and redirect must carry the prefix
    process.start()
    try:
        for name in PASSWORDS:
            add_user(process, name, admin=name == "root")
        yield process
    finally:
        process.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the journey saves its screenshots (the docs' folder when asked for)."""
    wanted = os.environ.get("ENVSTORE_UI_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path

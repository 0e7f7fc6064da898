"""500 environments: the list pages through them, the caller's own namespace first, and search
narrows them down. The server runs without workers and at the root (no URL prefix): the builds
stay queued, which the list must show too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import VIEWPORT, add_user
from tests.browser.pages import check_page, sign_in
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

SHARED, OWN = 490, 10


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Anonymous callers are administrators here (ServerProcess's default): they seed the store.
    process = ServerProcess(
        tmp_path_factory.mktemp("crowded") / "store", env={"ENVSTORE_WORKERS": "0"}
    )
    process.start()
    try:
        add_user(process, "alice")
        with httpx.Client(base_url=f"{process.url}/api/v1", timeout=60) as client:
            for n in range(SHARED + OWN):
                namespace, name = (
                    ("alice", f"mine-{n:02d}") if n >= SHARED else ("default", f"env-{n:03d}")
                )
                body = {"specification": "six\n", "namespace": namespace, "environment_name": name}
                assert client.post("/specification/", json=body).status_code == 200
        yield process
    finally:
        process.stop()


def test_500_environments_page_and_search(browser: Any, crowded: ServerProcess) -> None:
    base = crowded.url
    page = browser.new_context(viewport=VIEWPORT).new_page()
    sign_in(page, base, "alice")
    assert "500 environments" in page.locator(".page-head").inner_text()
    groups = page.locator(".ns-title").all_inner_texts()
    assert [g.split()[0] for g in groups] == ["alice", "default"]  # her own first
    assert page.locator(".env-table tbody tr").count() == 50
    assert page.locator(".pager").inner_text().count("Page 1 of 10") == 1
    assert "Queued" in page.locator(".env-table").first.inner_text()
    check_page(page)

    page.get_by_role("link", name="Next →").click()
    page.wait_for_url("**page=2")
    assert "Page 2 of 10" in page.locator(".pager").inner_text()
    assert page.locator(".env-table a.env-link").first.inner_text() == "env-040"
    page.goto(f"{base}/ui/?page=10")
    names = page.locator(".env-table a.env-link").all_inner_texts()
    assert names[-1] == "env-489" and len(names) == 50
    page.goto(f"{base}/ui/?page=11")  # past the end: a page that says so, not an error
    assert "Past the last page" in page.locator("main").inner_text()
    page.get_by_role("link", name="Go to page 10").click()
    page.wait_for_url("**page=10")
    assert "Page 10 of 10" in page.locator(".pager").inner_text()

    page.get_by_label("Search environments and namespaces").fill("env-42")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/ui/?q=env-42")
    names = page.locator(".env-table a.env-link").all_inner_texts()
    assert names == [f"env-42{n}" for n in range(10)]
    assert page.locator(".pager").count() == 0
    page.get_by_label("Search environments and namespaces").fill("no-such-thing")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**q=no-such-thing")
    assert "No environment matches" in page.locator("main").inner_text()

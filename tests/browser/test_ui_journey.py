"""The web UI journey in a real browser against a real ``envstore serve`` (at a URL prefix).

The admin makes a team namespace where alice is editor and bob viewer. Alice signs in, creates
an environment from YAML and watches its log stream to COMPLETED, sees requested packages apart
from dependencies, edits it to a second build, compares the two, rolls back, downloads the
lockfile, makes and revokes a token, meets readable errors for broken YAML and a failing build,
and signs out. Bob sees the environment without any control to change it, and a forged form
post is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from envstore.testing import ChannelBuilder
from tests.browser.conftest import VIEWPORT
from tests.browser.pages import check_page, sign_in, sign_out
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

BUILD_TIMEOUT = 120_000  # ms: a build on a loaded 2-core machine


def _spec(channel: ChannelBuilder, *deps: str) -> str:
    lines = "".join(f"  - {dep}\n" for dep in deps)
    return (
        "name: demo\ndescription: The demo app and the library it needs\n"
        f"channels:\n  - {channel.url}\ndependencies:\n{lines}"
    )


def _wait_for_result(page: Any) -> str:
    """The build page follows the build live, then shows the result; its status."""
    page.locator(".result-completed, .result-failed").wait_for(timeout=BUILD_TIMEOUT)
    return str(page.locator("#build-status .status").inner_text()).strip()


def _admin_makes_team(browser: Any, base: str, shots: Path) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    sign_in(page, base, "root")
    page.get_by_role("link", name="Namespaces").click()
    page.get_by_label("New namespace").fill("team")
    page.get_by_role("button", name="Create namespace").click()
    assert "Namespace team created." in page.locator(".notice").inner_text()
    card = page.locator(".ns-card", has=page.get_by_role("heading", name="team", exact=True))
    for entity, role in (("alice", "editor"), ("bob", "viewer")):
        card.get_by_label("User, group:NAME or *").fill(entity)
        card.get_by_label("Role").select_option(role)
        card.get_by_role("button", name="Add mapping").click()
        card = page.locator(".ns-card", has=page.get_by_role("heading", name="team", exact=True))
        assert card.get_by_role("cell", name=f"user:{entity}", exact=True).count() == 1
    check_page(page)
    page.screenshot(path=str(shots / "namespaces.png"))
    context.close()


def _create(page: Any, base: str, spec: str, *, screenshot: Path | None = None) -> int:
    page.goto(f"{base}/ui/new/?namespace=team")
    page.get_by_label("Namespace").fill("team")
    page.get_by_label("Specification").fill(spec)
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(re.compile(r".*/ui/build/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_ui_journey(
    browser: Any, ui_server: ServerProcess, channel: ChannelBuilder, shots: Path
) -> None:
    base = ui_server.url
    _admin_makes_team(browser, base, shots)

    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/ui/login/")
    check_page(page)
    page.screenshot(path=str(shots / "sign-in.png"))
    sign_in(page, base, "alice")

    # create from YAML and follow the build live (long polls on its log and status)
    log_polls: list[str] = []
    page.on(
        "response",
        lambda r: log_polls.append(r.url)
        if "/logs/?offset=" in r.url and "wait=" in r.url
        else None,
    )
    first = _create(page, base, _spec(channel, "app"), screenshot=shots / "create.png")
    assert _wait_for_result(page) == "Completed"
    assert log_polls, "the build page did not follow the log with the long poll"
    assert f"build {first} (conda)" in page.locator("#build-log").inner_text()
    check_page(page)
    page.screenshot(path=str(shots / "build.png"))

    # the environment: requested apart from dependencies
    page.locator(".result-completed a").first.click()
    page.wait_for_url(f"{base}/ui/env/team/demo/")
    requested = page.locator("#requested-packages tbody").inner_text()
    assert page.locator("#requested-packages .asked").first.inner_text() == "app"
    dependencies = page.locator("#dependency-packages tbody").inner_text()
    assert "app" in requested and "liba" not in requested
    assert "liba" in dependencies and "2.0" in dependencies
    assert "envstore run team/demo@" in page.locator("#cmd-run").inner_text()

    # edit to a second build: the editor starts from the current spec; liba is now asked for,
    # with the packages as of mid-2023 (liba 2.0 came out in 2024)
    page.get_by_role("link", name="Edit specification").click()
    editor = page.get_by_label("Specification")
    assert "- app" in editor.input_value()
    editor.fill(_spec(channel, "app", "liba"))
    page.get_by_label("Packages as of").fill("2023-06-01")
    page.screenshot(path=str(shots / "edit.png"))
    page.get_by_role("button", name="Build new version").click()
    page.wait_for_url(re.compile(r".*/ui/build/\d+/$"))
    second = int(page.url.rstrip("/").rsplit("/", 1)[1])
    assert second != first
    assert _wait_for_result(page) == "Completed"
    page.goto(f"{base}/ui/env/team/demo/")
    assert "2023-06-01" in page.locator(".summary").inner_text()  # packages as of
    assert page.locator("#requested-packages .asked").all_inner_texts() == ["app", "liba"]

    # compare the two builds
    page.goto(f"{base}/ui/env/team/demo/")
    page.get_by_label("From build").select_option(str(first))
    page.get_by_label("To build").select_option(str(second))
    page.get_by_role("button", name="Compare").click()
    changed = page.locator("#diff-table .diff-changed").inner_text()
    assert "liba" in changed and "2.0" in changed and "1.0" in changed
    assert "1 change" in page.locator(".diff-summary").inner_text()
    check_page(page)

    # roll back to the first build, after a confirmation
    row = page.locator("table.history tr", has=page.get_by_role("link", name=f"#{first}"))
    row.get_by_role("link", name="Make current…").click()
    page.get_by_role("button", name=f"Yes, make build #{first} current").click()
    assert f"Build {first} is now the current build" in page.locator(".notice").inner_text()
    current = page.locator("table.history tr.is-current").inner_text()
    assert f"#{first}" in current
    assert "liba" in page.locator("#dependency-packages").inner_text()
    assert "liba" not in page.locator("#requested-packages").inner_text()
    page.goto(f"{base}/ui/env/team/demo/")
    page.screenshot(path=str(shots / "environment.png"))
    page.goto(f"{base}/ui/env/team/demo/?compare=1&from={first}&to={second}#compare")
    page.screenshot(path=str(shots / "compare.png"))
    # a narrow window: everything still fits, nothing scrolls sideways
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{base}/ui/env/team/demo/")
    check_page(page)
    page.screenshot(path=str(shots / "environment-narrow.png"))
    page.set_viewport_size(VIEWPORT)

    # download the lockfile of the current build
    with page.expect_download() as download:
        page.locator("#dl-lockfile").click()
    lock = yaml.safe_load(Path(download.value.path()).read_text())
    versions = {entry["name"]: str(entry["version"]) for entry in lock["package"]}
    assert versions == {"app": "1.0", "liba": "2.0"}  # the first build's, current again

    _token_round_trip(page, base, shots)
    _errors_are_readable(page, base, channel, shots)

    page.goto(f"{base}/ui/")
    assert page.get_by_role("link", name="demo").count() == 1
    last_change = page.locator(".env-table time").first.inner_text()
    assert re.fullmatch(r"just now|\d+ \w+ ago", last_change), last_change
    check_page(page)
    page.screenshot(path=str(shots / "environments.png"))
    sign_out(page, base)
    context.close()

    _viewer_sees_no_controls(browser, base, first)
    _admin_reviews_policy_and_audit(browser, base, shots)


def _token_round_trip(page: Any, base: str, shots: Path) -> None:
    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label("Pattern 1", exact=True).fill("team/*")
    page.get_by_label("Role for pattern 1").select_option("viewer")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text().strip()
    assert secret.startswith("envs_")
    check_page(page)
    page.screenshot(path=str(shots / "tokens.png"))
    headers = {"Authorization": f"Bearer {secret}"}
    url = f"{base}/api/v1/environment/team/demo/"
    assert httpx.get(url, headers=headers, timeout=30).status_code == 200
    page.reload()  # shown once: reloading neither shows it again nor makes another token
    assert page.locator("#new-token").count() == 0
    assert page.locator("#token-table tbody tr").count() == 1
    row = page.locator("#token-table tr", has=page.get_by_role("cell", name="laptop"))
    assert "team/*" in row.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke token laptop").click()
    page.wait_for_url(re.compile(r".*/ui/tokens/\?notice=.*"))
    assert page.locator("#token-table").count() == 0
    assert httpx.get(url, headers=headers, timeout=30).status_code == 403


def _errors_are_readable(page: Any, base: str, channel: ChannelBuilder, shots: Path) -> None:
    # broken YAML: the message and its line, next to the text, nothing submitted
    page.goto(f"{base}/ui/new/")
    page.get_by_label("Namespace").fill("team")
    page.get_by_label("Specification").fill("name: broken\ndependencies:\n  - app\n  - [oops\n")
    page.get_by_role("button", name="Create environment").click()
    error = page.locator("#spec-error")
    error.wait_for()
    assert re.match(
        r"Line 5, column 1: specification is not valid YAML: expected", error.inner_text()
    )
    assert page.locator("#gutter .bad").count() == 1
    page.screenshot(path=str(shots / "yaml-error.png"))
    assert "/ui/new/" in page.url

    # a build that fails: the build page ends on a readable reason
    text = _spec(channel, "needs-old", "needs-new").replace("name: demo", "name: clash")
    text = text.replace("The demo app and the library it needs", "Two packages that conflict")
    _create(page, base, text)
    assert _wait_for_result(page) == "Failed"
    reason = page.locator("#status-info").inner_text()
    assert "liba" in reason, reason
    page.screenshot(path=str(shots / "build-failed.png"))
    assert "Traceback" not in page.locator("body").inner_text()


def _viewer_sees_no_controls(browser: Any, base: str, first: int) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    sign_in(page, base, "bob")
    page.get_by_role("link", name="demo").click()
    page.wait_for_url(f"{base}/ui/env/team/demo/")
    assert page.locator("#requested-packages").count() == 1
    assert page.get_by_role("link", name="Edit specification").count() == 0
    assert page.get_by_role("link", name="Make current…").count() == 0
    # a forged post with bob's own valid CSRF token is still refused: he is a viewer
    page.goto(f"{base}/ui/tokens/")
    csrf = page.locator("input[name=csrf]").first.input_value()
    refused = page.request.post(f"{base}/ui/env/team/demo/rollback/{first}/", form={"csrf": csrf})
    assert refused.status == 403
    assert "Not allowed" in refused.text()
    # and a page he may not open is a page that says so
    page.goto(f"{base}/ui/env/team/demo/edit/")
    assert page.locator("h1").inner_text() == "Not allowed"
    context.close()


def _admin_reviews_policy_and_audit(browser: Any, base: str, shots: Path) -> None:
    """The admin adds a deny rule to team on the policy page (a bad value first: the error is
    on the page); the page names the environment it now breaks, and the audit log shows the
    change with its old and new value."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    sign_in(page, base, "root")
    page.get_by_role("link", name="Policy").click()
    page.get_by_label("Namespace").fill("team")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r".*/ui/policy/\?namespace=team.*"))
    assert page.locator(".violations").count() == 0
    rule = '[{"name": "liba", "version": ">=2", "reason": "CVE-2026-0001"}]'
    page.get_by_label("Setting", exact=True).select_option("denied_packages")
    page.get_by_label("Value").fill("not json and not a list")
    page.get_by_role("button", name="Save").click()
    assert "denied_packages" in page.get_by_role("alert").inner_text()
    page.get_by_label("Value").fill(rule)
    page.get_by_role("button", name="Save").click()
    assert "denied_packages set" in page.locator(".notice").inner_text()
    assert "team/demo" in page.locator(".violations").inner_text()
    assert "CVE-2026-0001" in page.locator(".violations").inner_text()
    check_page(page)
    page.screenshot(path=str(shots / "policy.png"), full_page=True)
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Kind").fill("setting.")
    page.get_by_role("button", name="Filter").click()
    first = page.locator(".audit-table tbody tr").first
    assert "setting.update" in first.inner_text() and "team" in first.inner_text()
    page.get_by_role("link", name="Clear").click()
    assert page.locator(".audit-table tbody tr").count() > 5
    page.locator(".audit-table summary").first.click()  # the change: old and new value
    assert "CVE-2026-0001" in page.locator(".audit-table details").first.inner_text()
    check_page(page)
    page.screenshot(path=str(shots / "audit.png"))
    context.close()

"""Helpers the browser tests share: sign in, and the checks every page must pass."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import PASSWORDS

# Every visible form control has a label (a <label for>, a wrapping label or aria-label).
_UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
  .map(e => e.outerHTML)"""
_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def sign_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/ui/login/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/")
    assert page.locator(".who-name").inner_text() == name


def sign_out(page: Any, base: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/ui/login/")
    assert page.locator("#signout").count() == 0


def check_page(page: Any) -> None:
    """What every page must do: label its controls, fit the window, show no raw JSON."""
    assert page.evaluate(_UNLABELLED) == []
    assert page.evaluate(_OVERFLOW) <= 0, "the page scrolls sideways"
    assert not page.locator("body").inner_text().lstrip().startswith('{"status"')

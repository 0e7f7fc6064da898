"""The web UI's small formatting helpers: sizes, relative times, durations, badges, and what a
spec asked for each requested package."""

from __future__ import annotations

from datetime import datetime, timedelta

from envstore.ui.pages import _asked_for
from envstore.ui.render import ago, duration, human_size, status_badge, time_tag

NOW = datetime(2026, 12, 1, 12, 0, 0)


def test_sizes() -> None:
    assert [human_size(n) for n in (None, 0, 1023, 1024, 5 * 1024**2, 3 * 1024**3)] == [
        "—",
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_relative_times_and_durations() -> None:
    assert ago(None) == "never"
    assert ago(NOW - timedelta(seconds=59), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=1), NOW) == "1 minute ago"
    assert ago(NOW - timedelta(hours=5), NOW) == "5 hours ago"
    assert ago(NOW - timedelta(days=2, hours=3), NOW) == "2 days ago"
    assert duration(NOW, None) == "—"
    assert duration(NOW, NOW + timedelta(seconds=1.25)) == "1.2 s"
    assert duration(NOW, NOW + timedelta(seconds=125)) == "2 min 05 s"


def test_badges_and_time_tags_escape_what_they_show() -> None:
    assert 'status-completed"' in status_badge("COMPLETED") and "Completed" in status_badge(
        "COMPLETED"
    )
    assert "<script>" not in status_badge("<script>")
    assert str(time_tag(None)) == "—"
    assert 'datetime="2026-12-01T12:00:00+00:00"' in time_tag(NOW)


def test_what_the_spec_asked_for_each_package() -> None:
    spec = {
        "dependencies": [
            "python=3.11",
            "conda-forge::numpy >=1.26",
            "liba <2",
            "scikit-learn",
            {
                "pip": [
                    "six==1.16.0",
                    "Typing_Extensions>=4",
                    "requests[socks] ; python_version>'3'",
                ]
            },
        ]
    }
    assert _asked_for(spec) == {
        ("conda", "python"): "python=3.11",
        ("conda", "numpy"): "conda-forge::numpy >=1.26",
        ("conda", "liba"): "liba <2",
        ("conda", "scikit-learn"): "scikit-learn",
        ("pip", "six"): "six==1.16.0",
        ("pip", "typing-extensions"): "Typing_Extensions>=4",
        ("pip", "requests"): "requests[socks] ; python_version>'3'",
    }
    assert _asked_for({}) == {}

"""Formatting of server data for people: one line per status, readable tables, whole characters."""

from __future__ import annotations

import pytest

from envstore.cli.follow import LogStream, exit_code_for
from envstore.cli.output import (
    build_rows,
    build_summary,
    environment_rows,
    one_line,
    print_json,
    print_table,
    status_line,
)


def test_status_line_puts_status_info_on_one_line() -> None:
    build = {"id": 7, "status": "FAILED", "status_info": "solve_failed:\n no version of foo\n"}
    assert status_line(build) == "build 7 FAILED: solve_failed: no version of foo"
    assert status_line({"id": 3, "status": "COMPLETED", "status_info": None}) == (
        "build 3 COMPLETED"
    )


def test_one_line_renders_structured_status_info() -> None:
    assert one_line({"reason": "timeout"}) == '{"reason": "timeout"}'
    assert one_line(None) == ""


@pytest.mark.parametrize(("status", "code"), [("COMPLETED", 0), ("FAILED", 1), ("CANCELED", 1)])
def test_exit_code_follows_the_terminal_state(status: str, code: int) -> None:
    assert exit_code_for({"status": status}) == code


def test_environment_rows_show_reference_build_and_state() -> None:
    env = {
        "id": 1,
        "namespace": {"id": 1, "name": "alice"},
        "name": "science",
        "current_build_id": 4,
        "current_build": {"id": 4, "status": "COMPLETED"},
        "description": "for\nthe lab",
    }
    assert environment_rows([env]) == [["alice/science", "4", "COMPLETED", "for the lab"]]


def test_build_rows_and_summary_use_envstore_fields() -> None:
    build = {
        "id": 9,
        "environment_id": 2,
        "environment": {"namespace": "alice", "name": "science"},
        "status": "COMPLETED",
        "status_info": None,
        "build_key": "abcd1234-20250301-040500-000000-9-science",
        "scheduled_on": "2025-03-01T04:05:00",
        "ended_on": None,
        "build_artifacts": [
            {"artifact_type": "LOCKFILE"},
            {"artifact_type": "DIRECTORY"},
            {"artifact_type": "LOCKFILE"},
        ],
    }
    assert build_rows([build], {9}) == [
        ["*", "9", "alice/science", "COMPLETED", "2025-03-01 04:05:00", "-", "-"]
    ]
    assert build_rows([build])[0][0] == ""
    # the build JSON has no package list: the count comes from /build/{id}/packages/
    assert dict(build_summary(build))["packages"] == "-"
    summary = dict(build_summary(build, packages=2, current=True))
    assert summary["current"] == "yes"
    assert summary["environment"] == "alice/science"
    assert summary["build key"] == "abcd1234-20250301-040500-000000-9-science"
    assert summary["packages"] == "2"
    assert summary["artifacts"] == "DIRECTORY, LOCKFILE"
    assert dict(build_summary({"id": 1, "environment_id": 5}))["environment"] == "environment 5"


def test_table_prints_cells_verbatim_and_empty_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["name"], [["[bold]not markup[/bold]"]], empty="nothing")
    assert "[bold]not markup[/bold]" in capsys.readouterr().out
    print_table(["name"], [], empty="no environments")
    assert capsys.readouterr().out.strip() == "no environments"


def test_json_output_is_parseable(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    print_json([{"id": 1, "name": "x"}])
    assert json.loads(capsys.readouterr().out) == [{"id": 1, "name": "x"}]


def test_log_stream_holds_back_a_split_utf8_character() -> None:
    written: list[str] = []
    stream = LogStream(written.append)
    data = "résolu ✓\n".encode()
    cut = data.index("✓".encode()) + 1  # inside the 3-byte check mark
    stream.feed(data[:cut], cut)
    stream.feed(data[cut:], len(data))
    stream.finish()
    assert "".join(written) == "résolu ✓\n"
    assert stream.offset == len(data)


def test_log_stream_ends_an_unterminated_last_line() -> None:
    written: list[str] = []
    stream = LogStream(written.append)
    stream.feed(b"installing six", 14)
    stream.finish()
    assert "".join(written) == "installing six\n"

"""Governance through a real ``envstore serve`` and the ``envstore`` CLI (issue 10's acceptance).

An administrator restricts channels and denies a package version range; a user's submission
from another channel is refused with the allow-list; a denied package arriving only as a
dependency (from a generated conda channel, and from real PyPI packages: ``jsonpatch``
requires ``jsonpointer``) fails the build ``policy_violation`` with the chain that pulled it
in and nothing installed (I10); a ``freeze_date`` solves as of its date; ``policy check``
lists the older environment that now breaks the rules; the audit log shows it all in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from envstore.testing import ChannelBuilder
from tests.acceptance.test_access_control_journey import User
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(900)]

OLD = datetime(2023, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}", "ENVSTORE_BUILD_ARTIFACTS": '["LOCKFILE"]'}
    process = ServerProcess(tmp_path / "store", env=env).start()
    try:
        yield process
    finally:
        process.stop()


def _channels(root: Path) -> tuple[ChannelBuilder, ChannelBuilder]:
    good = ChannelBuilder(root / "good")
    good.add("liba", "1.0", files={"share/liba/v": b"1\n"}, timestamp=OLD)
    good.add("liba", "2.0", files={"share/liba/v": b"2\n"}, timestamp=NEW)
    good.add("libmid", "1.0", deps=["liba"], timestamp=OLD)
    good.add("app", "1.0", deps=["libmid"], timestamp=OLD)
    good.add_python_wrapper(timestamp=OLD)
    good.index()
    other = ChannelBuilder(root / "other")
    other.add("app", "1.0", timestamp=OLD)
    other.index()
    return good, other


def _spec(path: Path, channel: str, deps: list[str]) -> Path:
    path.write_text(yaml.safe_dump({"channels": [channel], "dependencies": deps}))
    return path


def _submit(user: User, spec: Path, name: str, *, code: int) -> tuple[int, str]:
    result = user(
        "env", "create", "-f", str(spec), "-n", "team", "--name", name, "--wait", code=code
    )
    found = re.search(r"^build (\d+) queued for ", result.stdout, re.MULTILINE)
    assert found, result.stdout + result.stderr
    return int(found.group(1)), result.stdout + result.stderr


def _build(server: ServerProcess, headers: dict[str, str], build_id: int) -> dict[str, Any]:
    answer = server.api("GET", f"/build/{build_id}/", headers=headers)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_I10_governance_journey(server: ServerProcess, tmp_path: Path) -> None:
    good, other = _channels(tmp_path / "channels")
    people = {
        n: User(n, server.url, tmp_path / f"home-{n}", server.store) for n in ("root", "alice")
    }
    root, alice = people["root"], people["alice"]
    root("user", "add", "root", "--admin", "--password-stdin", stdin="pw-root-123\n")
    alice("user", "add", "alice", "--password-stdin", stdin="pw-alice-123\n")
    for person in people.values():
        person.login()
    token = json.loads((root.home / "envstore" / "token").read_text())[server.url]
    admin = {"Authorization": f"Bearer {token}"}
    assert server.api("POST", "/namespace/team/", headers=admin).status_code == 200
    mapping = {"role_mappings": [{"entity": "alice", "role": "editor"}]}
    assert server.api("PUT", "/namespace/team/", json=mapping, headers=admin).status_code == 200

    # before any policy: an environment whose solution has liba 2.0 (through app -> libmid)
    spec = _spec(tmp_path / "app.yaml", good.url, ["app"])
    older, _ = _submit(alice, spec, "older", code=0)

    # the admin restricts channels (globally) and denies liba >=2 and jsonpointer >=2 in team
    root("settings", "set", f"conda_allowed_channels={json.dumps([good.url])}")
    denied = [
        {"name": "liba", "version": ">=2", "reason": "CVE-2024-0001"},
        {"name": "jsonpointer", "version": ">=2", "reason": "licence under review"},
    ]
    root("settings", "set", "team", f"denied_packages={json.dumps(denied)}")
    shown = alice("settings", "get", "team").stdout
    assert "CVE-2024-0001" in shown and "namespace team" in shown
    refused = alice("settings", "set", "team", "max_packages=3", code=2)
    assert "request not authorized" in refused.stderr

    # a channel outside the allow-list: refused at submit, naming it and the allow-list
    outside = _spec(tmp_path / "other.yaml", other.url, ["app"])
    refusal = alice("env", "create", "-f", str(outside), "-n", "team", "--name", "x", code=2)
    assert f"channel '{other.url}' is not allowed" in refusal.stderr
    assert good.url in refusal.stderr and "conda_allowed_channels" in refusal.stderr

    # a denied conda package arriving only as a dependency: FAILED policy_violation, the chain
    failed, output = _submit(alice, spec, "sci", code=1)
    info = _build(server, admin, failed)["status_info"]
    assert info.startswith("policy_violation: liba 2.0 (conda) is refused by denied_packages")
    assert "'liba >=2' (namespace team): CVE-2024-0001" in info
    assert "pulled in by app -> libmid -> liba" in info
    assert not list((server.store / "builds" / "team").glob(f"*-{failed}-sci")), "installed"

    # the same from real PyPI: jsonpatch requires jsonpointer
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("jsonpatch==1.33\n")
    pypi_failed, _ = _submit(alice, reqs, "web", code=1)
    info = _build(server, admin, pypi_failed)["status_info"]
    assert "jsonpointer" in info and "denied_packages 'jsonpointer >=2'" in info, info
    assert "licence under review" in info and "pulled in by jsonpatch -> jsonpointer" in info
    assert not list((server.store / "builds" / "team").glob(f"*-{pypi_failed}-web"))

    # and in the pip: section of a conda environment, checked before pip installs anything
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(yaml.safe_dump({"channels": [good.url],
                                     "dependencies": ["python", {"pip": ["jsonpatch==1.33"]}]}))  # fmt: skip
    mixed_failed, _ = _submit(alice, mixed, "mixed", code=1)
    info = _build(server, admin, mixed_failed)["status_info"]
    assert "jsonpointer" in info and "pulled in by jsonpatch -> jsonpointer" in info, info
    assert not list((server.store / "builds" / "team").glob(f"*-{mixed_failed}-mixed"))

    # freeze_date: the namespace's solves are as of 2023-06-01, before liba 2.0 was published
    root("settings", "set", "team", "freeze_date=2023-06-01")
    frozen, _ = _submit(alice, spec, "sci", code=0)
    build = _build(server, admin, frozen)
    assert build["as_of"] == "2023-06-01T00:00:00"
    assert {"setting": "freeze_date", "level": "namespace team",
            "added": "2023-06-01T00:00:00", "to": "as_of"} in build["policy_additions"]  # fmt: skip
    packages = server.api("GET", f"/build/{frozen}/packages/", headers=admin).json()["data"]
    assert {p["name"]: p["version"] for p in packages}["liba"] == "1.0"

    # policy check: the older environment breaks the rules now; the frozen one does not
    check = root("policy", "check", "team", "--json", code=1)
    found = json.loads(check.stdout)
    assert [(e["environment"], e["build_id"]) for e in found] == [("older", older)]
    [violation] = found[0]["violations"]
    assert violation["chain"] == ["app", "libmid", "liba"] and violation["version"] == "2.0"

    # the audit log, in order, with who did what
    events = json.loads(root("audit", "--namespace", "team", "--json").stdout)
    story = [(e["kind"], e["actor"]) for e in events]
    assert story == [
        ("namespace.create", "root"),
        ("namespace.role_mappings", "root"),
        ("environment.submit", "alice"),
        ("setting.update", "root"),
        ("environment.submit", "alice"),
        ("environment.submit", "alice"),
        ("environment.submit", "alice"),
        ("setting.update", "root"),
        ("environment.submit", "alice"),
    ]
    assert events[3]["after"]["denied_packages"][0]["reason"] == "CVE-2024-0001"
    assert all(e["address"] == "127.0.0.1" for e in events)
    everything = json.loads(root("audit", "--kind", "setting.", "--json").stdout)
    assert [e["target"] for e in everything] == ["global", "namespace team", "namespace team"]
    since = root("audit", "--since", "2999-01-01").stdout
    assert "no events" in since
    # alice administers only her own namespace: she sees none of team's events
    assert json.loads(alice("audit", "--namespace", "team", "--json").stdout) == []

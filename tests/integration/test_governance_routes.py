"""Settings, the policy at submit, the policy check and the audit log through the REST API, on
SQLite and PostgreSQL: not-found, forbidden and out-of-range input for every new route."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, make_user, submit


def _as(client: TestClient, token: str | None) -> TestClient:
    client.headers.pop("Authorization", None)
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    return str(body["message"])


def test_settings_levels_merge_history_and_errors(settings: Settings) -> None:
    client = client_for(settings)
    admin = client.headers["Authorization"].split()[1]
    complete(client, submit(client, "six==1.16.0\n", name="app", namespace="team"))
    lead = make_user(client, "lead", role_bindings=None)
    viewer = make_user(client, "viewer")
    _as(client, admin).put("/api/v1/namespace/team/", json={"role_mappings": [
        {"entity": "user:lead", "role": "admin"}, {"entity": "user:viewer", "role": "viewer"}]})  # fmt: skip

    put = client.put(
        "/api/v1/setting/", json={"max_packages": 40, "conda_allowed_channels": ["conda-forge"]}
    )
    assert put.status_code == 200, put.text
    _as(client, lead)
    assert (
        client.put(
            "/api/v1/setting/team/",
            json={"max_packages": 90, "pypi_included_packages": ["iniconfig"]},
        ).status_code
        == 200
    )
    assert (
        client.put("/api/v1/setting/team/app/", json={"freeze_date": "2024-06-01"}).status_code
        == 200
    )
    merged = _as(client, viewer).get("/api/v1/setting/team/app/").json()
    assert merged["data"]["max_packages"] == 40 and merged["sources"]["max_packages"] == "global"
    assert merged["data"]["pypi_included_packages"] == ["iniconfig"]
    assert merged["data"]["freeze_date"] == "2024-06-01T00:00:00"
    assert merged["set_here"] == {"freeze_date": "2024-06-01T00:00:00"}
    assert merged["level"] == "environment team/app"
    assert set(merged["data"]) >= {"conda_allowed_channels", "build_artifacts", "default_namespace"}

    # errors name the key; forbidden is the usual 403; missing levels are 404
    _as(client, lead)
    assert "unknown setting 'max_package'" in _error(
        client.put("/api/v1/setting/team/", json={"max_package": 1}), 400
    )
    assert "'default_namespace' can only be set globally" in _error(
        client.put("/api/v1/setting/team/", json={"default_namespace": "team"}), 400)  # fmt: skip
    assert "'max_packages': must be an integer" in _error(
        client.put("/api/v1/setting/team/", json={"max_packages": "9"}), 400
    )
    assert "from 1 to 100000" in _error(
        client.put("/api/v1/setting/team/", json={"max_packages": 10**9}), 400
    )
    assert "give the settings" in _error(client.put("/api/v1/setting/team/", json={}), 400)
    _error(
        client.put(
            "/api/v1/setting/team/", content=b"[1,2]", headers={"content-type": "application/json"}
        ),
        422,
    )
    assert (
        _error(client.put("/api/v1/setting/", json={"max_packages": 1}), 403)
        == "request not authorized"
    )
    _error(_as(client, viewer).put("/api/v1/setting/team/", json={"max_packages": 1}), 403)
    _error(_as(client, viewer).put("/api/v1/setting/team/app/", json={"max_packages": 1}), 403)
    _as(client, admin)
    assert "namespace 'ghost' not found" in _error(client.get("/api/v1/setting/ghost/"), 404)
    assert "team/ghost not found" in _error(
        client.put("/api/v1/setting/team/ghost/", json={"max_packages": 3}), 404
    )
    _error(client.get("/api/v1/setting/team/%2e%2e/"), 400)

    # versioned: who, when, old and new; null unsets
    assert client.put("/api/v1/setting/team/", json={"max_packages": None}).status_code == 200
    history = client.get("/api/v1/setting/team/", params={"history": "true"}).json()
    assert [
        (c["key"], c["old_value"], c["new_value"], c["changed_by"]) for c in history["data"]
    ] == [
        ("max_packages", None, 90, "lead"),
        ("pypi_included_packages", None, ["iniconfig"], "lead"),
        ("max_packages", 90, None, "admin"),
    ]
    assert history["count"] == 3 and history["data"][0]["changed_on"]
    _error(client.get("/api/v1/setting/", params={"history": "true", "page": 0}), 422)
    assert (
        client.get("/api/v1/setting/", params={"history": "true", "size": 10**6}).json()["size"]
        == 100
    )
    assert _as(client, None).get("/api/v1/setting/").status_code == 403


SPEC = "channels: [conda-forge]\ndependencies: [python, liba]\n"


def test_policy_at_submit_effective_spec_and_rebuild(settings: Settings) -> None:
    client = client_for(settings)
    client.post("/api/v1/namespace/team/")
    client.put("/api/v1/setting/", json={"conda_allowed_channels": ["conda-forge"],
                                         "conda_included_packages": ["ipykernel"]})  # fmt: skip
    client.put(
        "/api/v1/setting/team/", json={"freeze_date": "2023-03-01", "pinned_packages": ["liba 1.*"]}
    )
    refused = client.post("/api/v1/specification/", json={
        "specification": SPEC.replace("conda-forge", "bioconda"), "namespace": "team",
        "environment_name": "x"})  # fmt: skip
    message = _error(refused, 400)
    assert "channel 'bioconda' is not allowed" in message and "conda-forge" in message
    build_id = submit(client, SPEC, name="sci", namespace="team")
    build = client.get(f"/api/v1/build/{build_id}/").json()["data"]
    assert build["specification"]["spec"]["dependencies"] == ["liba", "python"]  # as submitted
    assert build["effective_specification"]["dependencies"] == ["ipykernel", "liba", "python"]
    assert build["as_of"] == "2023-03-01T00:00:00"
    assert build["policy_additions"] == [
        {"setting": "conda_included_packages", "level": "global", "added": "ipykernel", "to": "conda"},
        {"setting": "pinned_packages", "level": "namespace team", "added": "liba ==1.*", "to": "constraint"},
        {"setting": "freeze_date", "level": "namespace team", "added": "2023-03-01T00:00:00", "to": "as_of"},
    ]  # fmt: skip
    # the same spec under the same policy is the same build; a rebuild takes today's policy
    assert submit(client, SPEC, name="sci", namespace="team") == build_id
    client.put("/api/v1/setting/", json={"conda_allowed_channels": ["bioconda"]})
    assert "channel 'conda-forge' is not allowed" in _error(
        client.put(f"/api/v1/build/{build_id}/"), 400
    )
    client.put(
        "/api/v1/setting/", json={"conda_allowed_channels": None, "require_lockfile_hashes": True}
    )
    assert "require_lockfile_hashes" in _error(
        client.post("/api/v1/specification/", json={"specification": "six\n", "environment_name": "y"}), 400)  # fmt: skip


def test_policy_check_lists_environments_that_now_break_the_rules(settings: Settings) -> None:
    client = client_for(settings)
    complete(client, submit(client, "six==1.16.0\n", name="old", namespace="team"), extra=2)
    complete(
        client, submit(client, "six==1.15.0\n", name="older", namespace="team"), version="1.15.0"
    )
    assert client.get("/api/v1/policy/check/").json()["data"] == []
    client.put(
        "/api/v1/setting/team/",
        json={"denied_packages": [{"name": "six", "version": ">=1.16", "reason": "CVE-42"}]},
    )
    found = client.get("/api/v1/policy/check/").json()
    assert [(e["environment"], [v["package"] for v in e["violations"]]) for e in found["data"]] == [
        ("old", ["six"])
    ]
    violation = found["data"][0]["violations"][0]
    assert (violation["rule"], violation["level"], violation["reason"]) == (
        "denied_packages",
        "namespace team",
        "CVE-42",
    )
    assert violation["chain"] == ["six"]
    assert "1 of 2 environment(s)" in found["message"]
    assert client.get("/api/v1/policy/check/", params={"namespace": "ghost"}).json()["data"] == []
    assert client.get("/api/v1/policy/check/", params={"environment": "older"}).json()["data"] == []
    _error(client.get("/api/v1/policy/check/", params={"namespace": "../x"}), 400)
    # a rule the spec itself breaks now (a required package it does not name) is listed too
    client.put("/api/v1/setting/team/older/", json={"pypi_required_packages": ["iniconfig"]})
    older = client.get("/api/v1/policy/check/", params={"environment": "older"}).json()["data"]
    [refusal] = older[0]["violations"]
    assert refusal["rule"] == "submit" and "must name 'iniconfig'" in refusal["message"]
    outsider = make_user(client, "outsider")
    assert _as(client, outsider).get("/api/v1/policy/check/").json()["data"] == []


def test_audit_log_records_changes_in_order_and_is_for_admins(settings: Settings) -> None:
    client = client_for(settings)
    admin = client.headers["Authorization"].split()[1]
    lead = make_user(client, "lead")
    viewer = make_user(client, "viewer")
    client.post("/api/v1/namespace/team/")
    client.put(
        "/api/v1/namespace/team/",
        json={"role_mappings": [{"entity": "user:lead", "role": "admin"}]},
    )
    build_id = submit(client, "six==1.16.0\n", name="app", namespace="team")
    client.put(f"/api/v1/build/{build_id}/cancel/")
    client.put("/api/v1/setting/team/", json={"max_packages": 9})
    token = client.post("/api/v1/token/", json={"name": "ci"}).json()["data"]
    client.delete(f"/api/v1/token/{token['id']}/")
    events = client.get("/api/v1/audit/").json()
    kinds = [(e["kind"], e["namespace"], e["actor"]) for e in events["data"]]
    assert kinds[-7:] == [
        ("namespace.create", "team", "admin"),
        ("namespace.role_mappings", "team", "admin"),
        ("environment.submit", "team", "admin"),
        ("build.cancel", "team", "admin"),
        ("setting.update", "team", "admin"),
        ("token.create", None, "admin"),
        ("token.revoke", None, "admin"),
    ]
    assert kinds[0][0] == "user.create"  # the test's users were made on the server host
    setting = events["data"][-3]
    assert (setting["before"], setting["after"]) == ({"max_packages": None}, {"max_packages": 9})
    assert events["data"][-1]["address"] == "testclient"
    assert token["token"] not in json.dumps(events)  # never the secret
    # filters, paging, order
    only = client.get(
        "/api/v1/audit/", params={"kind": "token.", "order": "desc", "size": 1}
    ).json()
    # three tokens of the test users, then the one made and revoked here
    assert [e["kind"] for e in only["data"]] == ["token.revoke"] and only["count"] == 5
    assert client.get("/api/v1/audit/", params={"actor": "nobody"}).json()["count"] == 0
    future = client.get("/api/v1/audit/", params={"since": "2999-01-01T00:00:00"}).json()
    assert future["count"] == 0
    assert client.get("/api/v1/audit/", params={"until": "2000-01-01"}).json()["count"] == 0
    _error(client.get("/api/v1/audit/", params={"since": "2024-13-45"}), 422)
    _error(client.get("/api/v1/audit/", params={"page": 0}), 422)
    _error(client.get("/api/v1/audit/", params={"sort_by": "actor"}), 400)
    assert client.get("/api/v1/audit/", params={"size": 10**6}).json()["size"] == 100
    # a namespace admin sees their namespace's events only; a read-only token is refused
    scoped = _as(client, lead).get("/api/v1/audit/").json()
    assert scoped["count"] > 0 and {e["namespace"] for e in scoped["data"]} == {"team"}
    assert (
        _as(client, viewer).get("/api/v1/audit/", params={"namespace": "team"}).json()["count"] == 0
    )
    reader = make_user(client, "reader", role_bindings={"reader/*": ["viewer"]})
    assert _error(_as(client, reader).get("/api/v1/audit/"), 403) == "request not authorized"
    assert _as(client, None).get("/api/v1/audit/").status_code == 403
    # append-only: no route changes an event
    _as(client, admin)
    for method in ("PUT", "DELETE", "POST"):
        assert client.request(method, "/api/v1/audit/").status_code == 405


LOCKFILE = """version: 1
metadata:
  platforms: [linux-64]
  channels: [{url: "https://conda.anaconda.org/bioconda/", used_env_vars: []}]
package:
- name: liba
  version: "2.0"
  manager: conda
  platform: linux-64
  url: https://conda.anaconda.org/bioconda/linux-64/liba-2.0-0.conda
  hash: {sha256: "%s"}
""" % ("ab" * 32)


def test_I9_lockfile_from_a_channel_outside_the_allow_list_is_refused_at_submit(
    settings: Settings,
) -> None:
    client = client_for(settings)
    client.put("/api/v1/setting/", json={"conda_allowed_channels": ["conda-forge"]})
    body = {"specification": LOCKFILE, "environment_name": "locked", "is_lockfile": True}
    message = _error(client.post("/api/v1/specification/", json=body), 400)
    assert "channel 'https://conda.anaconda.org/bioconda/' is not allowed" in message
    client.put("/api/v1/setting/", json={"conda_allowed_channels": None,
                                         "denied_packages": ["liba >=2"]})  # fmt: skip
    message = _error(client.post("/api/v1/specification/", json=body), 400)
    assert "liba 2.0 (conda) is refused by denied_packages 'liba >=2' (global)" in message
    client.put("/api/v1/setting/", json={"denied_packages": ["liba <2"]})
    assert client.post("/api/v1/specification/", json=body).status_code == 200


def test_concurrent_changes_of_a_new_setting_all_land(settings: Settings) -> None:
    client = client_for(settings)
    token = client.headers["Authorization"]
    app = client.app

    def put(value: int) -> int:
        # no ``with``: the app's lifespan (which disposes the shared engine) is not run per thread
        mine = TestClient(app, headers={"Authorization": token})  # type: ignore[arg-type]
        return mine.put("/api/v1/setting/", json={"max_packages": value}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(put, range(100, 108)))
    assert codes == [200] * 8
    history = client.get("/api/v1/setting/", params={"history": "true"}).json()
    assert history["count"] == 8
    assert client.get("/api/v1/setting/").json()["data"]["max_packages"] in range(100, 108)

"""I11: one user's flood of submissions is refused with 429 + Retry-After beyond the quota;
other users are unaffected, a resubmission that queues nothing does not count, and rebuilds
count as submissions."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from envstore.db.engine import session_scope
from envstore.db.models import Build
from envstore.settings import Settings
from tests.integration.helpers import client_for, make_user


def _spec(n: int, namespace: str = "alice") -> dict[str, str]:
    return {
        "namespace": namespace,
        "specification": f"name: e{n}\ndependencies:\n  - pip:\n    - six=={n}.0\n",
    }


def _editors(settings: Settings, quota: int) -> tuple[TestClient, dict[str, str]]:
    """A client signed in as alice, and bob's headers: users (not administrators) who submit
    into their own namespaces."""
    client = client_for(settings.model_copy(update={"submit_quota_per_minute": quota}))
    alice, bob = make_user(client, "alice"), make_user(client, "bob")
    client.headers["Authorization"] = f"Bearer {alice}"
    return client, {"Authorization": f"Bearer {bob}"}


def test_I11_the_quota_edge_other_users_and_the_window(settings: Settings) -> None:
    client, bob = _editors(settings, 3)
    answers = [client.post("/api/v1/specification/", json=_spec(n)) for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]  # the edge: exactly the quota
    again = client.post("/api/v1/specification/", json=_spec(0))
    assert again.status_code == 429  # over the quota, even for a spec that would queue nothing
    refused = client.post("/api/v1/specification/", json=_spec(3))
    assert refused.status_code == 429, refused.text
    assert "submission quota" in refused.json()["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    first = answers[0].json()["data"]["build_id"]
    assert client.put(f"/api/v1/build/{first}/").status_code == 429  # a rebuild is a submission
    assert (
        client.post("/api/v1/specification/", json=_spec(4, "bob"), headers=bob).status_code == 200
    )
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:  # a minute later: the window has moved on
        db.execute(update(Build).values(scheduled_on=Build.scheduled_on - timedelta(seconds=61)))
    assert client.post("/api/v1/specification/", json=_spec(3)).status_code == 200


def test_I11_identical_resubmissions_do_not_use_the_quota(settings: Settings) -> None:
    client, _ = _editors(settings, 2)
    answers = [client.post("/api/v1/specification/", json=_spec(1)) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.json()["data"]["build_id"] for a in answers}) == 1
    assert client.post("/api/v1/specification/", json=_spec(2)).status_code == 200


def test_I11_zero_turns_the_quota_off_and_administrators_are_not_limited(
    settings: Settings,
) -> None:
    client, _ = _editors(settings, 0)
    answers = [client.post("/api/v1/specification/", json=_spec(n)) for n in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    admin = client_for(settings.model_copy(update={"submit_quota_per_minute": 1}))
    answers = [admin.post("/api/v1/specification/", json=_spec(n)) for n in range(5, 8)]
    assert [a.status_code for a in answers] == [200] * 3

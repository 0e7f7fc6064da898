"""A3-A5: API tokens are revocable at once, hashed at rest, expire, and never widen rights."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from envstore.db.engine import session_scope
from envstore.db.models import ApiToken, utcnow
from tests.security.conftest import World


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_A3_revoked_token_is_refused_on_the_very_next_request(world: World) -> None:
    client = world.as_(world.bob)
    made = client.post("/api/v1/token/", json={"name": "ci"}).json()["data"]
    token, token_id = made["token"], made["id"]
    assert made["name"] == "ci" and token.startswith("envs_")
    client.headers["Authorization"] = f"Bearer {token}"
    assert client.get("/api/v1/environment/bob/app/").status_code == 200
    assert client.delete(f"/api/v1/token/{token_id}/").status_code == 200
    # the very next request: anonymous again (v1 never answers 401), so refused
    assert client.get("/api/v1/environment/bob/app/").status_code == 403
    me = client.get("/api/v1/permission/").json()["data"]
    assert me["authenticated"] is False and me["entity_permissions"] == {}
    # and it is gone from the owner's list
    owner = world.as_(world.bob)
    assert token_id not in [t["id"] for t in owner.get("/api/v1/token/").json()["data"]]


def test_A3_nobody_revokes_someone_elses_token(world: World) -> None:
    alice = world.as_(world.alice)
    answer = alice.delete(f"/api/v1/token/{world.bob_token_id}/")
    assert answer.status_code == 404
    assert world.as_(world.bob).get("/api/v1/environment/bob/app/").status_code == 200


def test_A4_the_database_holds_only_hashes(world: World) -> None:
    made = world.as_(world.bob).post("/api/v1/token/", json={}).json()["data"]["token"]
    state = world.app_client.app.state.envstore  # type: ignore[attr-defined]
    with state.engine.connect() as connection:
        dump = repr(connection.execute(text("SELECT * FROM api_token")).all())
    for secret in (made, world.alice, world.bob):
        assert secret not in dump
        assert secret.removeprefix("envs_") not in dump
    with session_scope(state.factory) as db:
        hashes = db.scalars(select(ApiToken.token_hash)).all()
    assert hashes and all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)
    listed = world.as_(world.bob).get("/api/v1/token/").json()["data"]
    assert all("token" not in t and "token_hash" not in t for t in listed)


def test_A5_expired_token_is_anonymous(world: World) -> None:
    state = world.app_client.app.state.envstore  # type: ignore[attr-defined]
    client = world.as_(world.bob)
    made = client.post("/api/v1/token/", json={}).json()["data"]
    with session_scope(state.factory) as db:
        db.execute(
            update(ApiToken)
            .where(ApiToken.id == made["id"])
            .values(expires_on=utcnow() - timedelta(seconds=1))
        )
    expired = world.as_(made["token"])
    assert expired.get("/api/v1/environment/bob/app/").status_code == 403
    assert expired.get("/api/v1/permission/").json()["data"]["authenticated"] is False


def test_A5_token_in_the_past_is_refused(world: World) -> None:
    answer = world.as_(world.bob).post("/api/v1/token/", json={"expiration": "2000-01-01T00:00"})
    assert answer.status_code == 400 and "past" in answer.json()["message"]


@pytest.mark.parametrize(
    "wanted",
    [
        {"*/*": ["viewer"]},  # a wider pattern than bob holds
        {"alice/*": ["viewer"]},  # someone else's namespace
        {"bob/*": ["admin"], "b*/*": ["viewer"]},  # a glob wider than his namespace
        {"default/*": ["editor"]},  # a higher role than his viewer there
    ],
)
def test_A5_token_wider_than_the_caller_is_refused(world: World, wanted: dict) -> None:
    answer = world.as_(world.bob).post("/api/v1/token/", json={"role_bindings": wanted})
    assert answer.status_code == 403, answer.text


def test_A5_narrowed_token_and_tokens_made_with_it_stay_narrow(world: World) -> None:
    client = world.as_(world.bob)
    narrow = client.post("/api/v1/token/", json={"role_bindings": {"bob/app": ["viewer"]}})
    assert narrow.status_code == 200, narrow.text
    viewer = world.as_(narrow.json()["data"]["token"])
    assert viewer.get("/api/v1/environment/bob/app/").status_code == 200
    assert viewer.get(f"/api/v1/build/{world.bob_build}/lockfile/").status_code == 200
    assert viewer.put(f"/api/v1/build/{world.bob_build}/cancel/").status_code == 403
    assert viewer.delete("/api/v1/environment/bob/app/").status_code == 403
    perms = viewer.get("/api/v1/permission/").json()["data"]
    assert perms["entity_roles"] == {"bob/app": ["viewer"]}
    # a token made with the narrow token cannot climb back to bob's full rights
    climb = viewer.post("/api/v1/token/", json={"role_bindings": {"bob/*": ["admin"]}})
    assert climb.status_code == 403
    child = viewer.post("/api/v1/token/", json={}).json()["data"]
    assert child["role_bindings"] == {"bob/app": ["viewer"]}


def test_A5_basic_auth_and_anonymous_tokens(world: World) -> None:
    client = world.as_(None)
    basic = base64.b64encode(f"anything:{world.bob}".encode()).decode()
    seen = client.get("/api/v1/permission/", headers={"Authorization": f"Basic {basic}"})
    assert seen.json()["data"]["authenticated"] is True
    assert seen.json()["data"]["primary_namespace"] == "bob"
    anonymous = client.post("/api/v1/token/")
    assert anonymous.status_code == 200
    token = anonymous.json()["data"]["token"]
    assert (
        client.get("/api/v1/permission/", headers=_bearer(token)).json()["data"][
            "entity_permissions"
        ]
        == {}
    )
    rubbish = client.get("/api/v1/permission/", headers=_bearer("envs_not-a-real-token-at-all"))
    assert rubbish.status_code == 200 and rubbish.json()["data"]["authenticated"] is False


def test_last_used_is_recorded(world: World) -> None:
    client = world.as_(world.bob)
    made = client.post("/api/v1/token/", json={"name": "probe"}).json()["data"]
    assert made["last_used"] is None
    world.as_(made["token"]).get("/api/v1/environment/")
    listed = {t["id"]: t for t in world.as_(world.bob).get("/api/v1/token/").json()["data"]}
    assert listed[made["id"]]["last_used"] is not None

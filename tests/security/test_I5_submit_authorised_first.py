"""I5: an unauthenticated or unauthorised submit is refused before its body is parsed or
anything is solved (the answer is 403, never the 400/422 that parsing would give)."""

from __future__ import annotations

from tests.security.conftest import World

BOMB = "dependencies: " + "[" * 1000 + "]" * 1000


def test_I5_anonymous_submit_is_refused_before_the_body_is_read(world: World) -> None:
    anonymous = world.as_(None)
    for body in (b"{not json at all", b'{"specification": 42}', b""):
        answer = anonymous.post(
            "/api/v1/specification/", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 403, answer.text
        assert answer.json()["message"] == "request not authorized"
    solve = anonymous.get("/api/v1/specification/", params={"pip": "six"})
    assert solve.status_code == 403


def test_I5_unauthorised_namespace_is_refused_before_the_spec_is_parsed(world: World) -> None:
    alice = world.as_(world.alice)
    answer = alice.post(
        "/api/v1/specification/",
        json={"specification": BOMB, "namespace": "bob", "environment_name": "x"},
    )
    assert answer.status_code == 403, answer.text
    # the same bomb in her own namespace is parsed, and refused for what it is
    own = alice.post(
        "/api/v1/specification/",
        json={"specification": BOMB, "namespace": "alice", "environment_name": "x"},
    )
    assert own.status_code == 400 and "max_yaml_depth" in own.json()["message"]
    # a viewer (default/* for every signed-in user) may not submit there either
    viewer = alice.post(
        "/api/v1/specification/",
        json={"specification": "six\n", "namespace": "default", "environment_name": "x"},
    )
    assert viewer.status_code == 403
    builds = world.as_(world.bob).get("/api/v1/build/").json()["data"]
    assert {b["environment"]["namespace"] for b in builds} == {"bob"}

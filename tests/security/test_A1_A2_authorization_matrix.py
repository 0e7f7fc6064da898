"""A1, A2: every route of the application, called by someone with rights only elsewhere.

The matrix is generated from the application's route table: a route that is not listed in
``MATRIX`` (or whose declared permission disagrees with it) fails
``test_A1_matrix_covers_every_route``. For every route that names an object, a caller with
roles only in namespace ``alice`` (and an anonymous caller) is refused on ``bob``'s objects with
the same 403 whether the object exists or not; by-id routes check the namespace of the loaded
build (A2); list routes show them nothing of ``bob``'s; and ``bob`` himself is not refused.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from envstore.api.deps import On
from tests.security.conftest import World
from tests.security.routes import declarations, iter_routes

# (method, path) -> what the route is: "object" (names one of B's objects: denied),
# "list" (filtered), "gate" (needs the permission somewhere; the target is in the body),
# "admin" (needs the permission on every namespace: only administrators of everything),
# "public" (anyone; only the caller's own data), "health" (infrastructure, declares nothing).
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/"): "public",
    ("GET", "/api/v1/permission/"): "public",
    ("GET", "/api/v1/usage/"): "list",
    ("GET", "/api/v1/channel/"): "list",
    ("GET", "/api/v1/package/"): "list",
    ("GET", "/api/v1/environment/"): "list",
    ("GET", "/api/v1/environment/{namespace}/{name}/"): "object",
    ("PUT", "/api/v1/environment/{namespace}/{name}/"): "object",
    ("DELETE", "/api/v1/environment/{namespace}/{name}/"): "object",
    ("GET", "/api/v1/environment/{namespace}/{name}/conda-lock.yaml"): "object",
    ("GET", "/api/v1/environment/{namespace}/{name}/conda-lock.yml"): "object",
    ("GET", "/api/v1/environment/{namespace}/{name}/lockfile/"): "object",
    ("GET", "/api/v1/resolve/{namespace}/{name}/"): "object",
    ("GET", "/api/v1/build/"): "list",
    ("GET", "/api/v1/build/{build_id}/"): "object",
    ("PUT", "/api/v1/build/{build_id}/"): "object",
    ("PUT", "/api/v1/build/{build_id}/cancel/"): "object",
    ("PUT", "/api/v1/build/{build_id}/artifacts/"): "object",
    ("DELETE", "/api/v1/build/{build_id}/"): "object",
    ("GET", "/api/v1/build/{build_id}/packages/"): "object",
    ("GET", "/api/v1/build/{build_id}/logs/"): "object",
    ("GET", "/api/v1/build/{build_id}/conda-lock.yml"): "object",
    ("GET", "/api/v1/build/{build_id}/conda-lock.yaml"): "object",
    ("GET", "/api/v1/build/{build_id}/lockfile/"): "object",
    ("GET", "/api/v1/build/{build_id}/yaml/"): "object",
    ("GET", "/api/v1/build/{build_id}/archive/"): "object",
    ("GET", "/api/v1/build/{build_id}/docker/"): "object",
    ("GET", "/api/v1/build/{build_id}/explicit/"): "object",
    ("GET", "/api/v1/build/{build_id}/diff/{other_id}/"): "object",
    ("POST", "/api/v1/specification/"): "gate",
    ("GET", "/api/v1/specification/"): "gate",
    ("GET", "/api/v1/namespace/"): "list",
    ("GET", "/api/v1/namespace/{namespace}/"): "object",
    ("POST", "/api/v1/namespace/{namespace}/"): "object",
    ("PUT", "/api/v1/namespace/{namespace}/"): "object",
    ("PUT", "/api/v1/namespace/{namespace}/metadata"): "object",
    ("DELETE", "/api/v1/namespace/{namespace}/"): "object",
    ("GET", "/api/v1/namespace/{namespace}/roles"): "object",
    ("DELETE", "/api/v1/namespace/{namespace}/roles"): "object",
    ("GET", "/api/v1/namespace/{namespace}/role"): "object",
    ("POST", "/api/v1/namespace/{namespace}/role"): "object",
    ("PUT", "/api/v1/namespace/{namespace}/role"): "object",
    ("DELETE", "/api/v1/namespace/{namespace}/role"): "object",
    ("GET", "/api/v1/setting/"): "gate",
    ("PUT", "/api/v1/setting/"): "admin",
    ("GET", "/api/v1/setting/{namespace}/"): "object",
    ("PUT", "/api/v1/setting/{namespace}/"): "object",
    ("GET", "/api/v1/setting/{namespace}/{name}/"): "object",
    ("PUT", "/api/v1/setting/{namespace}/{name}/"): "object",
    ("GET", "/api/v1/policy/check/"): "list",
    ("GET", "/api/v1/audit/"): "gate",
    ("POST", "/api/v1/token/"): "public",
    ("GET", "/api/v1/token/"): "public",
    ("DELETE", "/api/v1/token/{token_id}/"): "public",
    ("POST", "/api/v1/jupyterhub/token/"): "public",
    ("GET", "/v2/"): "public",
    ("GET", "/v2/{namespace}/{name}/manifests/{reference}"): "object",
    ("GET", "/v2/{namespace}/{name}/blobs/{digest}"): "object",
    ("GET", "/v2/{namespace}/{name}/tags/list"): "object",
    ("GET", "/login/"): "public",
    ("POST", "/login/"): "public",
    ("POST", "/logout/"): "public",
    ("GET", "/oauth_login/"): "public",
    ("GET", "/oauth_callback/"): "public",
    ("GET", "/livez"): "health",
    ("GET", "/readyz"): "health",
    # the web UI: pages declare the same Require(...) as the API routes they mirror
    ("GET", "/"): "public",
    ("GET", "/ui/"): "list",
    ("GET", "/ui/env/{namespace}/{name}/"): "object",
    ("GET", "/ui/env/{namespace}/{name}/edit/"): "object",
    ("GET", "/ui/env/{namespace}/{name}/rollback/{build_id}/"): "object",
    ("POST", "/ui/env/{namespace}/{name}/rollback/{build_id}/"): "object",
    ("GET", "/ui/build/{build_id}/"): "object",
    ("GET", "/ui/new/"): "gate",
    ("GET", "/ui/login/"): "public",
    ("GET", "/ui/tokens/"): "public",
    ("POST", "/ui/tokens/"): "public",
    ("POST", "/ui/tokens/{token_id}/revoke/"): "public",
    ("GET", "/ui/namespaces/"): "list",
    ("POST", "/ui/namespaces/"): "gate",
    ("POST", "/ui/namespaces/{namespace}/delete/"): "object",
    ("POST", "/ui/namespaces/{namespace}/roles/"): "object",
    ("GET", "/ui/policy/"): "gate",
    ("POST", "/ui/policy/"): "gate",
    ("GET", "/ui/audit/"): "gate",
    (
        "GET",
        "/metrics",
    ): "health",  # counts only; exposed to the monitoring network (docs/deploy.md)
}
KIND_OF = {On.PUBLIC: "public", On.LIST: "list", On.ANY: "gate", On.EVERYWHERE: "admin"}
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/environment/{namespace}/{name}/"): {"description": "mine now"},
    ("PUT", "/api/v1/namespace/{namespace}/"): {"metadata": {"owner": "alice"}},
    ("PUT", "/api/v1/namespace/{namespace}/metadata"): {"metadata": {"owner": "alice"}},
    ("POST", "/api/v1/namespace/{namespace}/role"): {"other_namespace": "alice", "role": "admin"},
    ("PUT", "/api/v1/namespace/{namespace}/role"): {"other_namespace": "alice", "role": "admin"},
    ("DELETE", "/api/v1/namespace/{namespace}/role"): {"other_namespace": "alice"},
    ("POST", "/api/v1/specification/"): {
        "specification": "six\n",
        "namespace": "bob",
        "environment_name": "app",
    },
    ("POST", "/login/"): {"username": "nobody", "password": "wrong-password"},
    ("POST", "/api/v1/jupyterhub/token/"): {"hub_token": "not-a-hub-token"},
    ("PUT", "/api/v1/setting/"): {"max_packages": 50},
    ("PUT", "/api/v1/setting/{namespace}/"): {"max_packages": 50},
    ("PUT", "/api/v1/setting/{namespace}/{name}/"): {"max_packages": 50},
}
# The UI's form posts (urlencoded; these callers send an API token, not the login cookie, so
# no CSRF token is asked of them).
FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/ui/env/{namespace}/{name}/rollback/{build_id}/"): {},
    ("POST", "/ui/namespaces/"): {"name": "bob"},
    ("POST", "/ui/namespaces/{namespace}/delete/"): {"confirm": "not-the-name"},
    ("POST", "/ui/namespaces/{namespace}/roles/"): {"entity": "alice", "role": "admin"},
    ("POST", "/ui/policy/"): {"namespace": "bob", "key": "max_packages", "value": "50"},
}
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/v1/namespace/{namespace}/role"): {"other_namespace": "alice"},
}


def _table(world: World) -> list[tuple[str, str, str, Any]]:
    """(method, template, kind, declared On) for every route of the app."""
    rows = []
    for method, path, route in iter_routes(world.app_client.app):  # type: ignore[arg-type]
        declared = declarations(route)
        on = next(iter(declared))[1] if len(declared) == 1 else None
        rows.append((method, path, MATRIX.get((method, path), "missing"), on))
    return rows


def _url(template: str, world: World, *, exists: bool = True) -> str:
    values = {
        "namespace": "bob" if exists else "nobody-here",
        "name": "app" if exists else "nothing",
        "build_id": str(world.bob_build if exists else 987654),
        "other_id": str(world.bob_queued),
        "token_id": str(world.bob_token_id),
        "reference": "latest",
        "digest": "sha256:" + "0" * 64,
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _call(world: World, token: str | None, method: str, template: str, **kw: Any) -> Any:
    client = world.as_(token)
    form = FORMS.get((method, template))
    if form is not None:
        return client.request(
            method, _url(template, world, **kw), data=form, follow_redirects=False
        )
    return client.request(
        method,
        _url(template, world, **kw),
        json=BODIES.get((method, template)),
        params=QUERIES.get((method, template)),
        follow_redirects=False,
    )


def _message(answer: Any) -> str:
    """The error message of an API answer (JSON) or of a UI page (its ``lead`` paragraph)."""
    if answer.headers.get("content-type", "").startswith("text/html"):
        found = re.search(r'<p class="lead">(.*?)</p>', answer.text, re.DOTALL)
        return found.group(1).strip() if found else answer.text
    return str(answer.json().get("message"))


def _body(answer: Any) -> Any:
    """The answer's body; a UI page's message wrapped in the API's error envelope, so both
    compare against one expected refusal."""
    if answer.headers.get("content-type", "").startswith("text/html"):
        return {"status": "error", "message": _message(answer)}
    return answer.json()


def test_A1_matrix_covers_every_route(world: World) -> None:
    seen = set()
    for method, path, kind, on in _table(world):
        seen.add((method, path))
        assert kind != "missing", f"{method} {path} is not in the authorization MATRIX"
        if kind == "health":
            assert on is None, f"{method} {path}: health routes declare nothing"
            continue
        assert on is not None, f"{method} {path} declares no (or several) Require(...)"
        assert KIND_OF.get(on, "object") == kind, f"{method} {path}: declares {on}, not {kind}"
    assert set(MATRIX) <= seen, f"routes gone from the app: {set(MATRIX) - seen}"


def _refusal(caller: str, path: str) -> tuple[int, Any]:
    """The v1 API's 403; the registry's own error format, 401 for anonymous callers (A13)."""
    if not path.startswith("/v2/"):
        return 403, {"status": "error", "message": "request not authorized"}
    if caller == "anonymous":
        code, message = (
            "UNAUTHORIZED",
            ("authentication required: log in with your user name and an envstore API token"),
        )
        return 401, {"errors": [{"code": code, "message": message, "detail": None}]}
    message = "requested access to the resource is denied"
    return 403, {"errors": [{"code": "DENIED", "message": message, "detail": None}]}


@pytest.mark.parametrize("caller", ["alice", "anonymous"])
def test_A1_other_namespace_objects_are_denied(world: World, caller: str) -> None:
    token = world.alice if caller == "alice" else None
    for method, path, kind, _on in _table(world):
        if kind in ("object", "admin") or (kind == "gate" and caller == "anonymous"):
            there = _call(world, token, method, path)
            assert (there.status_code, _body(there)) == _refusal(caller, path), (
                f"{caller} {method} {path}: {there.text}"
            )
            if kind == "object":
                missing = _call(world, token, method, path, exists=False)
                assert (missing.status_code, _body(missing)) == _refusal(caller, path), (
                    f"{caller} {method} {path}: a missing object answers differently"
                )
        elif kind == "gate":
            if method == "POST":  # alice may create, but not in bob's namespace
                denied = _call(world, token, method, path)
                assert denied.status_code == 403, denied.text
        elif kind == "list":
            listed = _call(world, token, method, path)
            assert listed.status_code == 200, listed.text
            assert "bob" not in listed.text, f"{caller} {method} {path} shows bob's objects"
    # Nothing of bob's moved: his build, environment and token are as they were.
    owner = world.as_(world.bob)
    env = owner.get("/api/v1/environment/bob/app/").json()["data"]
    assert env["current_build_id"] == world.bob_build and env["description"] is None
    assert owner.get(f"/api/v1/build/{world.bob_queued}/").json()["data"]["status"] == "QUEUED"
    assert owner.get("/api/v1/namespace/bob/").json()["data"]["metadata_"] == {}
    assert owner.get("/api/v1/namespace/bob/roles").json()["data"] == []


def test_A1_lists_show_only_what_the_caller_may_see(world: World) -> None:
    alice = world.as_(world.alice)
    envs = alice.get("/api/v1/environment/").json()
    assert [(e["namespace"]["name"], e["name"]) for e in envs["data"]] == [("alice", "mine")]
    assert envs["count"] == 1
    builds = alice.get("/api/v1/build/").json()
    assert [b["id"] for b in builds["data"]] == [world.alice_build]
    assert [n["name"] for n in alice.get("/api/v1/namespace/").json()["data"]] == ["alice"]
    usage = alice.get("/api/v1/usage/").json()["data"]
    assert [u["namespace"] for u in usage] == ["alice"]
    anonymous = world.as_(None)
    for path in ("/api/v1/environment/", "/api/v1/build/", "/api/v1/package/"):
        assert anonymous.get(path).json()["count"] == 0


def test_A1_the_owner_is_not_refused(world: World) -> None:
    """The right role succeeds: bob reaches every route on his own objects (DELETEs last)."""
    rows = sorted(_table(world), key=lambda r: (r[0] == "DELETE", r[1]))
    for method, path, kind, _on in rows:
        if kind in ("object", "gate"):
            answer = _call(world, world.bob, method, path)
            assert answer.status_code != 403, f"bob {method} {path}: {answer.text}"
            assert answer.status_code < 500, f"bob {method} {path}: {answer.text}"


def test_A2_by_id_routes_use_the_loaded_build(world: World) -> None:
    alice = world.as_(world.alice)
    # alice's own build is fine; bob's build under any by-id route is refused
    assert alice.get(f"/api/v1/build/{world.alice_build}/").status_code == 200
    for suffix in ("", "packages/", "logs/", "lockfile/", "yaml/"):
        refused = alice.get(f"/api/v1/build/{world.bob_build}/{suffix}")
        assert refused.status_code == 403, suffix
    # a diff of her build against bob's is refused too: both builds are checked
    diff = alice.get(f"/api/v1/build/{world.alice_build}/diff/{world.bob_build}/")
    assert diff.status_code == 403
    # rollback of her environment to bob's build id is not a way in either
    swap = alice.put("/api/v1/environment/alice/mine/", json={"build_id": world.bob_build})
    assert swap.status_code == 404

"""Login, the ``conda-store-auth`` cookie, logout, ``/permission/``, namespace role routes, and
an OIDC login against a small authorization-code provider on loopback. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import client_for, make_user, submit


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    client = client_for(settings, user=None)
    make_user(client, "alice", groups=("ds",))
    yield client
    client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]


def test_login_sets_a_signed_httponly_expiring_cookie(client: TestClient) -> None:
    answer = client.post(
        "/login/?next=/ui/envs", json={"username": "alice", "password": "password-alice"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["redirect_url"] == "/ui/envs"
    header = answer.headers["set-cookie"].lower()
    assert header.startswith("conda-store-auth=")
    assert "httponly" in header and "samesite=lax" in header and "max-age=604800" in header
    me = client.get("/api/v1/permission/").json()["data"]
    assert me["authenticated"] is True and me["primary_namespace"] == "alice"
    assert me["entity_roles"] == {"alice/*": ["admin"], "default/*": ["viewer"]}
    assert "environment:create" in me["entity_permissions"]["alice/*"]
    assert me["entity_permissions"]["default/*"] == sorted(me["entity_permissions"]["default/*"])
    assert all(key.count("/") == 1 for key in me["entity_permissions"])
    assert client.post("/logout/").status_code == 200
    assert client.get("/api/v1/permission/").json()["data"]["authenticated"] is False


def test_wrong_password_forged_or_foreign_cookie_is_anonymous(client: TestClient) -> None:
    wrong = client.post("/login/", json={"username": "alice", "password": "nope-nope"})
    assert wrong.status_code == 403 and "set-cookie" not in wrong.headers
    unknown = client.post("/login/", json={"username": "nobody", "password": "nope-nope"})
    assert unknown.json() == wrong.json()
    client.post("/login/", json={"username": "alice", "password": "password-alice"})
    good = client.cookies["conda-store-auth"]
    client.cookies.clear()
    for forged in (good[:-2] + "xx", "eyJ1IjoiYWxpY2UifQ.x.y", "alice"):
        client.cookies.set("conda-store-auth", forged)
        assert client.get("/api/v1/permission/").json()["data"]["authenticated"] is False
        client.cookies.clear()


def test_open_redirect_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/login/?next=//evil.example/", json={"username": "alice", "password": "password-alice"}
    )
    assert answer.json()["data"]["redirect_url"] == "/"


def test_login_page_is_html(client: TestClient) -> None:
    page = client.get("/login/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="password"' in page.text


def test_cookie_wins_over_bearer(client: TestClient) -> None:
    bob = make_user(client, "bob")
    client.post("/login/", json={"username": "alice", "password": "password-alice"})
    me = client.get("/api/v1/permission/", headers={"Authorization": f"Bearer {bob}"})
    assert me.json()["data"]["primary_namespace"] == "alice"


def test_anonymous_defaults_and_configurable_anonymous_bindings(settings: Settings) -> None:
    closed = client_for(settings, user=None)
    assert closed.get("/api/v1/environment/").json()["count"] == 0
    assert (
        closed.post(
            "/api/v1/specification/", json={"specification": "six\n", "environment_name": "x"}
        ).status_code
        == 403
    )
    settings.anonymous_role_bindings = {"default/*": ["viewer"]}
    opened = client_for(settings, user=None)
    me = opened.get("/api/v1/permission/").json()["data"]
    assert me["authenticated"] is False and me["entity_roles"] == {"default/*": ["viewer"]}


def test_submit_needs_create_rights_and_namespace_creation_rights(client: TestClient) -> None:
    alice = make_user(client, "alice")
    client.headers["Authorization"] = f"Bearer {alice}"
    build = submit(client, name="tools")  # primary namespace alice: created on the fly
    assert client.get(f"/api/v1/build/{build}/").json()["data"]["environment"] == {
        "namespace": "alice",
        "name": "tools",
    }
    denied = client.post(
        "/api/v1/specification/",
        json={"specification": "six\n", "environment_name": "x", "namespace": "default"},
    )
    assert denied.status_code == 403  # viewer on default/*


def test_namespace_role_mappings_and_sharing(client: TestClient) -> None:
    admin = make_user(client, "root", admin=True)
    alice = make_user(client, "alice")
    client.headers["Authorization"] = f"Bearer {admin}"
    assert client.post("/api/v1/namespace/team/").status_code == 200
    submit(client, name="app", namespace="team")
    put = client.put(
        "/api/v1/namespace/team/",
        json={"metadata": {"k": 1}, "role_mappings": [{"entity": "group:ds", "role": "developer"}]},
    )
    assert put.status_code == 200, put.text
    mappings = put.json()["data"]["role_mappings"]
    assert [(m["entity"], m["role"]) for m in mappings] == [("group:ds", "editor")]
    client.headers["Authorization"] = f"Bearer {alice}"  # alice is in group ds
    me = client.get("/api/v1/permission/").json()["data"]
    assert me["entity_roles"]["team/*"] == ["editor"]
    assert client.get("/api/v1/environment/team/app/").status_code == 200
    assert client.delete("/api/v1/environment/team/app/").status_code == 403  # editor: no delete
    assert client.put("/api/v1/namespace/team/", json={"metadata": {}}).status_code == 403
    # namespace-to-namespace sharing, the /role routes
    client.headers["Authorization"] = f"Bearer {admin}"
    share = {"other_namespace": "bob", "role": "viewer"}
    assert client.post("/api/v1/namespace/team/role", json=share).status_code == 200
    assert client.post("/api/v1/namespace/team/role", json=share).status_code == 409
    shared = client.get("/api/v1/namespace/team/roles").json()["data"]
    assert shared == [{"namespace": "team", "other_namespace": "bob", "role": "viewer"}]
    share["role"] = "editor"
    assert client.put("/api/v1/namespace/team/role", json=share).status_code == 200
    one = client.get("/api/v1/namespace/team/role", params={"other_namespace": "bob"})
    assert one.json()["data"]["role"] == "editor"
    bob = make_user(client, "bob")
    client.headers["Authorization"] = f"Bearer {bob}"
    assert client.get("/api/v1/permission/").json()["data"]["entity_roles"]["team/*"] == ["editor"]
    client.headers["Authorization"] = f"Bearer {admin}"
    gone = client.request("DELETE", "/api/v1/namespace/team/role", json={"other_namespace": "bob"})
    assert gone.status_code == 200
    assert client.get("/api/v1/namespace/team/roles").json()["data"] == []
    client.headers["Authorization"] = f"Bearer {bob}"
    assert client.get("/api/v1/environment/team/app/").status_code == 403
    client.headers["Authorization"] = f"Bearer {admin}"
    meta = client.put("/api/v1/namespace/team/metadata", json={"metadata": {"owner": "ds"}})
    assert meta.json()["data"]["metadata_"] == {"owner": "ds"}


# -- OIDC against a loopback provider --------------------------------------------------------


class _Provider(BaseHTTPRequestHandler):
    codes: dict[str, str] = {}  # code -> PKCE challenge
    userinfo: dict[str, Any] = {}

    def log_message(self, *_args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/authorize":
            assert query["client_id"] == "envstore" and query["code_challenge_method"] == "S256"
            code = f"code-{len(self.codes)}"
            self.codes[code] = query["code_challenge"]
            target = (
                query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
            )
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
        elif url.path == "/userinfo":
            ok = self.headers.get("Authorization") == "Bearer access-1"
            self._json(200 if ok else 401, self.userinfo if ok else {})
        else:
            self._json(404, {})

    def do_POST(self) -> None:
        form = {
            k: v[0]
            for k, v in parse_qs(
                self.rfile.read(int(self.headers["Content-Length"])).decode()
            ).items()
        }
        challenge = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        good = (
            challenge is not None
            and computed.rstrip(b"=").decode() == challenge
            and form.get("client_secret") == "s3cret"
        )
        self._json(200 if good else 400, {"access_token": "access-1"} if good else {})


@pytest.fixture
def provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_oidc_login_creates_the_user_with_the_providers_groups(
    settings: Settings, provider: str
) -> None:
    settings.oauth_provider = "oidc"
    settings.oauth_client_id = "envstore"
    settings.oauth_client_secret = type(settings.oauth_client_secret)("s3cret")
    settings.oauth_authorize_url = f"{provider}/authorize"
    settings.oauth_token_url = f"{provider}/token"
    settings.oauth_userinfo_url = f"{provider}/userinfo"
    settings.group_role_bindings = {"data-science": {"shared/*": ["editor"]}}
    _Provider.userinfo = {"preferred_username": "carol", "groups": ["/data-science", "Bad Group"]}
    client = client_for(settings, user=None)
    assert "Sign in with oidc" in client.get("/login/").text
    start = client.get("/oauth_login/?next=/ui/envs", follow_redirects=False)
    assert start.status_code == 302 and start.headers["location"].startswith(provider)
    back = httpx.get(start.headers["location"], follow_redirects=False)
    callback = urlparse(back.headers["location"])
    assert callback.path == "/oauth_callback/"
    done = client.get(f"{callback.path}?{callback.query}", follow_redirects=False)
    assert done.status_code == 302, done.text
    assert done.headers["location"] == "/ui/envs"
    me = client.get("/api/v1/permission/").json()["data"]
    assert me["authenticated"] is True and me["primary_namespace"] == "carol"
    assert me["entity_roles"]["shared/*"] == ["editor"]
    # replaying the same code, or a state that was not ours, does not sign anyone in
    client.cookies.clear()
    replay = client.get(f"{callback.path}?{callback.query}", follow_redirects=False)
    assert replay.status_code == 400
    assert client.get("/api/v1/permission/").json()["data"]["authenticated"] is False


def test_jupyterhub_provider_uses_the_hub_endpoints(settings: Settings) -> None:
    from envstore.auth.oauth import provider_from_settings

    settings.oauth_provider = "jupyterhub"
    settings.jupyterhub_url = "https://hub.example.org/"
    hub = provider_from_settings(settings)
    assert hub is not None
    assert hub.userinfo_endpoint == "https://hub.example.org/hub/api/user"
    assert hub.token_endpoint == "https://hub.example.org/hub/api/oauth2/token"
    url = hub.authorize_url("st", "ch", "http://x/oauth_callback/")
    assert url.startswith("https://hub.example.org/hub/api/oauth2/authorize?")
    assert "code_challenge=ch" in url and "state=st" in url
    # a real hub answers invalid_scope to an empty `scope=` (tests/acceptance/test_jupyterhub.py)
    assert "scope=" not in url
    settings.jupyterhub_api_url = "http://hub-internal:8081/hub/api/"
    internal = provider_from_settings(settings)
    assert internal is not None
    assert internal.token_endpoint == "http://hub-internal:8081/hub/api/oauth2/token"
    assert internal.authorize_endpoint.startswith("https://hub.example.org/hub/api/oauth2/")


def test_provider_error_at_callback_is_a_clear_refusal(settings: Settings) -> None:
    settings.oauth_provider = "jupyterhub"
    settings.jupyterhub_url = "https://hub.example.org/"
    client = client_for(settings, user=None)
    answer = client.get("/oauth_callback/?error=access_denied&state=x", follow_redirects=False)
    assert answer.status_code == 403
    assert answer.json()["message"] == "the identity provider refused the login: access_denied"


def test_hub_token_exchange_needs_the_jupyterhub_provider(settings: Settings) -> None:
    client = client_for(settings, user=None)
    answer = client.post("/api/v1/jupyterhub/token/", json={"hub_token": "abc"})
    assert answer.status_code == 404
    assert "does not use JupyterHub" in answer.json()["message"]
    settings.oauth_provider = "jupyterhub"
    settings.jupyterhub_url = "http://127.0.0.1:9"  # nothing listens: the hub is down
    client = client_for(settings, user=None)
    down = client.post("/api/v1/jupyterhub/token/", json={"hub_token": "abc"})
    assert down.status_code == 503 and "JupyterHub unreachable" in down.json()["message"]
    too_long = client.post("/api/v1/jupyterhub/token/", json={"hub_token": "x" * 5000})
    assert too_long.status_code == 422

"""envstore as a JupyterHub service, against a real JupyterHub from PyPI and its
``configurable-http-proxy`` from npm (``tests/support/hub_proxy``, installed by ``make test``).

envstore is served behind the hub's proxy at ``/services/envstore/`` with the hub as its login
provider, configured as docs/jupyter.md tells an administrator. A hub user signs in to envstore
through the hub and finds their personal namespace; a single-user server's hub token (with the
access scope docs/jupyter.md grants the ``server`` role) is traded for an envstore token of the
same user, and every other kind of hub token is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from envstore.errors import Forbidden
from envstore.jupyter.connection import exchange_hub_token
from envstore.jupyter.extension import KernelSync
from tests.support.server import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
PROXY = (
    ROOT / "tests" / "support" / "hub_proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
)
JUPYTERHUB = str(Path(sys.executable).parent / "jupyterhub")
HUB_PASSWORD = "hub-password-for-tests"
PREFIX = "/services/envstore"


@dataclass
class Hub:
    public: str  # the proxy: what browsers see
    api: str  # the hub's own API, as services reach it
    admin_token: str
    envstore: str  # envstore behind the proxy

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        return httpx.request(method, f"{self.api}{path}", headers=headers, timeout=30, **kwargs)

    def user_token(self, user: str, scopes: list[str]) -> str:
        answer = self.admin("POST", f"/users/{user}/tokens", json={"scopes": scopes})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])


_CONFIG = """
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{root}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{root}/proxy.pid"
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = "{password}"
c.Authenticator.allowed_users = {{"hubuser"}}
# docs/jupyter.md: envstore as a hub service (its OAuth client), reachable to users, and the
# single-user servers' tokens allowed to trade themselves for an envstore token.
c.JupyterHub.services = [
    {{
        "name": "envstore",
        "url": "http://127.0.0.1:{envstore_port}",
        "api_token": "{client_secret}",
        "oauth_client_id": "service-envstore",
        "oauth_redirect_uri": "{public}{prefix}/oauth_callback/",
        "oauth_no_confirm": True,
    }},
    {{"name": "test-admin", "api_token": "{admin_token}"}},
]
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=envstore"]}},
    {{
        "name": "server",
        "scopes": [
            "users:activity!user",
            "access:servers!server",
            "access:services!service=envstore",
        ],
    }},
    {{
        "name": "test-admin",
        "scopes": ["admin:users", "tokens", "access:servers", "access:services"],
        "services": ["test-admin"],
    }},
]
"""


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Until ``url`` answers 200 (the proxy answers 404 until the hub added its route)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up:\n{log.read_text()}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    if not PROXY.exists():
        message = f"{PROXY} missing: 'make test' installs it with npm ci"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("hub")
    ports = {
        name: free_port() for name in ("public_port", "hub_port", "proxy_api_port", "envstore_port")
    }
    public = f"http://127.0.0.1:{ports['public_port']}"
    client_secret, admin_token = secrets.token_hex(24), secrets.token_hex(24)
    envstore = ServerProcess(
        root / "store",
        port=ports["envstore_port"],
        env={
            "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}",
            "ENVSTORE_WORKERS": "0",
            "ENVSTORE_URL_PREFIX": PREFIX,
            "ENVSTORE_OAUTH_PROVIDER": "jupyterhub",
            "ENVSTORE_JUPYTERHUB_URL": public,
            "ENVSTORE_JUPYTERHUB_API_URL": f"http://127.0.0.1:{ports['hub_port']}/hub/api",
            "ENVSTORE_OAUTH_CLIENT_ID": "service-envstore",
            "ENVSTORE_OAUTH_CLIENT_SECRET": client_secret,
            "ENVSTORE_OAUTH_CALLBACK_URL": f"{public}{PREFIX}/oauth_callback/",
        },
    )
    envstore.url += PREFIX  # everything, /livez included, lives under the prefix
    config = root / "jupyterhub_config.py"
    config.write_text(
        _CONFIG.format(
            root=root,
            proxy=PROXY,
            password=HUB_PASSWORD,
            client_secret=client_secret,
            admin_token=admin_token,
            public=public,
            prefix=PREFIX,
            **ports,
        )
    )
    log = root / "hub.log"
    envstore.start()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [JUPYTERHUB, "-f", str(config)], cwd=root, stdout=sink, stderr=sink
        )
    try:
        _wait(f"{public}/hub/api/", process, log)
        _wait(f"{public}{PREFIX}/livez", process, log)
        yield Hub(
            public=public,
            api=f"http://127.0.0.1:{ports['hub_port']}/hub/api",
            admin_token=admin_token,
            envstore=f"{public}{PREFIX}",
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        envstore.stop()


def _sign_in_through_hub(hub: Hub, browser: httpx.Client) -> httpx.Response:
    """What a browser does: envstore → hub login form → hub authorize → envstore callback."""
    page = browser.get(f"{hub.envstore}/oauth_login/")
    assert page.status_code == 200 and "/hub/login" in str(page.url), page.text[:500]
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
    assert xsrf, page.text[:2000]
    form = {"username": "hubuser", "password": HUB_PASSWORD, "_xsrf": xsrf.group(1)}
    return browser.post(str(page.url), data=form)


def test_hub_user_signs_in_through_the_hub_and_gets_their_namespace(hub: Hub) -> None:
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        assert (
            browser.get(f"{hub.envstore}/api/v1/permission/").json()["data"]["authenticated"]
            is False
        )
        landed = _sign_in_through_hub(hub, browser)
        assert str(landed.url).startswith(hub.envstore), landed.url
        me = browser.get(f"{hub.envstore}/api/v1/permission/").json()["data"]
        assert me["authenticated"] is True
        assert me["primary_namespace"] == "hubuser"
        assert "admin" in me["entity_roles"]["hubuser/*"]
        namespaces = browser.get(f"{hub.envstore}/api/v1/namespace/").json()["data"]
        assert "hubuser" in [n["name"] for n in namespaces]
        assert browser.get(f"{hub.envstore}/api/v1/namespace/hubuser/").status_code == 200


def test_single_user_server_token_is_traded_for_the_users_envstore_token(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_scopes = [
        "users:activity!user",
        "access:servers!server=hubuser/",
        "access:services!service=envstore",
    ]
    hub_token = hub.user_token("hubuser", server_scopes)
    token = exchange_hub_token(hub.envstore, hub_token)
    answer = httpx.get(
        f"{hub.envstore}/api/v1/permission/", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.json()["data"]["primary_namespace"] == "hubuser"
    listed = httpx.get(
        f"{hub.envstore}/api/v1/token/", headers={"Authorization": f"Bearer {token}"}
    )
    assert [t["name"] for t in listed.json()["data"]] == ["jupyterhub single-user server"]

    # what the jupyter_server extension does in a single-user server, with no token configured
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub_token)
    monkeypatch.setenv("ENVSTORE_URL", hub.envstore)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("ENVSTORE_TOKEN", raising=False)
    syncer = KernelSync(_Log(), 0, tmp_path / "kernels")
    syncer.sync_once()
    assert syncer._offline is False
    assert os.environ["ENVSTORE_TOKEN"].startswith("envs_")


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)

    warning = info


def test_other_hub_tokens_are_refused(hub: Hub) -> None:
    # a token of the same user without access to the envstore service (e.g. another service's)
    narrow = hub.user_token("hubuser", ["read:users:name!user"])
    with pytest.raises(Forbidden, match="lacks access:services!service=envstore"):
        exchange_hub_token(hub.envstore, narrow)
    # a service's token is no user's
    with pytest.raises(Forbidden, match="only a hub user's token"):
        exchange_hub_token(hub.envstore, hub.admin_token)
    with pytest.raises(Forbidden, match="does not accept this token"):
        exchange_hub_token(hub.envstore, "not-a-hub-token")
    empty = httpx.post(f"{hub.envstore}/api/v1/jupyterhub/token/", json={"hub_token": ""})
    assert empty.status_code == 422

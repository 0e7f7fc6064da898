"""``/docs`` works offline: the page loads Swagger UI's files from this server only (issue 15,
"the browser's first contact"), under a URL prefix too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envstore.settings import Settings
from tests.integration.helpers import client_for
from tests.security.conftest import migrated_sqlite


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)


@pytest.mark.parametrize("prefix", ["", "/envstore"])
def test_docs_page_loads_every_file_from_this_server(settings: Settings, prefix: str) -> None:
    settings.url_prefix = prefix
    client = client_for(settings, user=None)
    page = client.get(f"{prefix}/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
    loaded = [u for pair in urls for u in pair if u]
    assert f"{prefix}/openapi.json" in loaded
    assert not [u for u in loaded if "//" in u], "the page names another host"
    assert len(loaded) >= 4
    for url in loaded:
        answer = client.get(url)
        assert answer.status_code == 200 and len(answer.content) > 100, url
    bundle = client.get(f"{prefix}/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in bundle.content
    assert client.get(f"{prefix}/docs/static/index.html").status_code == 404
    assert client.get(f"{prefix}/docs/static/..%2F__init__.py").status_code == 404

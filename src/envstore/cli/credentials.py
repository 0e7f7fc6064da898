"""Where ``envstore login`` keeps API tokens: ``$XDG_CONFIG_HOME/envstore/token`` (default
``~/.config/envstore/token``), a JSON object ``{server URL: token}`` readable by the owner only.

Tokens are kept per server URL, so a token for one server is never sent to another. The
loopback names (``localhost``, ``127.0.0.1``, ``[::1]``) are one server: ``serve`` listens on
``127.0.0.1`` while the CLI's default is ``http://localhost:8080``, and a token kept under one
spelling must be found under the other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["forget_token", "store_token", "stored_token", "token_file"]


def token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "envstore" / "token"


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _server(url: str) -> str:
    """Which server ``url`` is: lower-case scheme and host, loopback as ``localhost``."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return url.rstrip("/")
    if not parts.scheme or not host:
        return url.rstrip("/")
    if host in _LOOPBACK:
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _key(url: str) -> str:
    """The file keeps the URL as the user gave it (without a final slash)."""
    return url.rstrip("/")


def stored_token(url: str) -> str | None:
    data = _load(token_file())
    if _key(url) in data:
        return data[_key(url)]
    server = _server(url)
    return next((token for key, token in data.items() if _server(key) == server), None)


def _save(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    temporary.chmod(0o600)
    temporary.replace(path)


def store_token(url: str, token: str) -> Path:
    path = token_file()
    data = _drop_server(_load(path), url)  # one token per server, whatever its spelling
    data[_key(url)] = token
    _save(path, data)
    return path


def forget_token(url: str) -> bool:
    path = token_file()
    data = _load(path)
    kept = _drop_server(data, url)
    if len(kept) == len(data):
        return False
    _save(path, kept)
    return True


def _drop_server(data: dict[str, str], url: str) -> dict[str, str]:
    server = _server(url)
    return {key: token for key, token in data.items() if _server(key) != server}

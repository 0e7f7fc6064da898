"""The secret that signs login cookies: configured, or generated once per store (A8).

The embedded default keeps a random secret in ``<store>/state/secret`` (mode 0600), so
``make serve`` needs no set-up. A configured secret that is empty, short or one of the values
that appear in examples makes the server refuse to start, unless ``development_mode`` is on.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from envstore.errors import EnvstoreError
from envstore.settings import Settings

__all__ = ["KNOWN_DEFAULT_SECRETS", "InsecureSecret", "resolve_secret"]

MIN_SECRET_LENGTH = 32
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "secret",
        "default",
        "envstore",
        "conda-store",
        "development",
        "password",
        "insecure",
        "not-a-secret",
    }
)


class InsecureSecret(EnvstoreError):
    """The configured cookie secret is empty, too short or a known default."""


def resolve_secret(settings: Settings) -> str:
    """The cookie secret to use; raises :class:`InsecureSecret` for a weak configured one."""
    if settings.secret is None:
        return _stored_secret(settings.state_dir / "secret")
    value = settings.secret.get_secret_value()
    weak = value.strip().lower() in KNOWN_DEFAULT_SECRETS or len(value) < MIN_SECRET_LENGTH
    if weak and not settings.development_mode:
        raise InsecureSecret(
            "ENVSTORE_SECRET is empty, shorter than 32 characters or a known default value; "
            "set a long random one (python -c 'import secrets; print(secrets.token_hex(32))'), "
            "or unset it to have one generated in <store>/state/secret"
        )
    return value


def _stored_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if len(value) < MIN_SECRET_LENGTH:
            raise InsecureSecret(f"{path} holds a secret shorter than 32 characters") from None
        return value
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value

"""What every CLI command shares: the connection settings and reading user references.

The root callback stores a :class:`Connection` in the Typer context; commands open an
:class:`EnvstoreClient` from it only after their local input is checked, so a typo never costs
a round trip and is reported the same way whether or not the server is up.
"""

from __future__ import annotations

from dataclasses import dataclass

import typer

from envstore.cli.client import DEFAULT_URL, EnvstoreClient
from envstore.cli.credentials import stored_token
from envstore.core.builds import BuildStatus
from envstore.core.refs import EnvRef, parse_ref
from envstore.errors import InvalidInput

__all__ = ["Connection", "open_client", "parse_env", "parse_selector_ref", "parse_status"]


@dataclass(frozen=True)
class Connection:
    """Where the server is and who we are (``--url``/``ENVSTORE_URL``, ``ENVSTORE_TOKEN``)."""

    url: str = DEFAULT_URL
    token: str | None = None


def open_client(ctx: typer.Context) -> EnvstoreClient:
    """A client for the connection chosen by the root options."""
    root = ctx.find_root()
    connection = root.obj if isinstance(root.obj, Connection) else Connection()
    # --token / ENVSTORE_TOKEN first, then the token `envstore login` kept for this URL.
    token = connection.token or stored_token(connection.url)
    return EnvstoreClient(connection.url, token=token)


def parse_selector_ref(text: str) -> tuple[EnvRef, str]:
    """Validate ``NS/NAME[@BUILD|@DATE]``; return it and the raw selector for ``/resolve/``.

    The selector is sent as typed because the server owns the date semantics (a bare date
    means the end of that day); the local parse only refuses bad input early.
    """
    ref = parse_ref(text)
    return ref, text.partition("@")[2]


def parse_env(text: str) -> EnvRef:
    """Validate a plain ``NS/NAME`` where a build selector would be meaningless."""
    ref, selector = parse_selector_ref(text)
    if selector:
        raise InvalidInput(f"{text!r}: expected NAMESPACE/NAME without '@{selector}'")
    return ref


def parse_status(text: str | None) -> str | None:
    """Normalise ``--status`` (any case) to a build state, refusing unknown ones locally."""
    if text is None or text == "":
        return None
    try:
        return BuildStatus(text.upper()).value
    except ValueError:
        known = ", ".join(status.value for status in BuildStatus)
        raise InvalidInput(f"unknown build status {text!r}; expected one of {known}") from None

"""The public names of envstore.auth are pinned: changing them is a deliberate act."""

from __future__ import annotations

import envstore.auth
from envstore.core.permissions import Permission


def test_auth_names() -> None:
    assert envstore.auth.__all__ == ["LOCAL_PRINCIPAL", "Principal"]
    # the identity of server-side jobs, never of a request: it may do everything
    assert envstore.auth.LOCAL_PRINCIPAL.can_everywhere(Permission.ENV_DELETE)

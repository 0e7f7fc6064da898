"""Use cases of envstore. Each public function owns its transaction (commits what it changes)
and raises only :mod:`envstore.errors`; ``api`` and ``jobs`` call these, never the tables."""

"""envstore.auth."""

"""envstore.db."""

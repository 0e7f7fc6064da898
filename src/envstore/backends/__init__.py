"""envstore.backends."""

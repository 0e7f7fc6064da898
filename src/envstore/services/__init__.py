"""envstore.services."""

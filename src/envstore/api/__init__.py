"""envstore.api."""

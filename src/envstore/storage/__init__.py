"""envstore.storage."""

"""envstore.testing."""

"""envstore.artifacts."""

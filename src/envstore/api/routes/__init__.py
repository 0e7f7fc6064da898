"""envstore.api.routes."""

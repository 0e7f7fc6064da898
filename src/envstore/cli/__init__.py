"""envstore.cli."""

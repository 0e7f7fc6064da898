"""envstore.jobs."""

"""Build artifacts: relocatable archives, OCI images, lockfile diffs (written in workers)."""

__all__: list[str] = []

"""Fixtures of the resilience tests: a loopback package index per test file, and a fresh
schema on the test's own PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import fresh_schema
from tests.support.local_index import LocalIndex, local_index


@pytest.fixture(scope="module")
def module_index() -> Iterator[LocalIndex]:
    """The file's loopback index, for module-scoped fixtures (a cluster shared by tests)."""
    with local_index() as idx:
        yield idx


@pytest.fixture
def index(module_index: LocalIndex) -> LocalIndex:
    """The file's loopback index, answering at once: a test that slows it down (``delay``)
    slows only itself."""
    module_index.delay = 0
    return module_index


@pytest.fixture
def database(pg_database: str) -> str:
    """The test's PostgreSQL database with the current schema."""
    fresh_schema(pg_database)
    return pg_database

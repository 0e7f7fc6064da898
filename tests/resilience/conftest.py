"""Fixtures of the resilience tests: a loopback package index per test file, and a fresh
schema on the test's own PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import fresh_schema
from tests.support.local_index import LocalIndex, local_index


@pytest.fixture(scope="module")
def _module_index() -> Iterator[LocalIndex]:
    with local_index() as idx:
        yield idx


@pytest.fixture
def index(_module_index: LocalIndex) -> LocalIndex:
    """The file's loopback index, answering at once: a test that slows it down (``delay``)
    slows only itself."""
    _module_index.delay = 0
    return _module_index


@pytest.fixture
def database(pg_database: str) -> str:
    """The test's PostgreSQL database with the current schema."""
    fresh_schema(pg_database)
    return pg_database

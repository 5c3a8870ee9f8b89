"""Shared fixtures: one anvil per test session, a fresh deployment per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from teebridge.anvil import Anvil
from tests.helpers import Stack, deploy_stack
from tests.pg_cluster import REQUIRE_ENV, PgCluster, find_bindir


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture
def stack(anvil: Anvil) -> Stack:
    return deploy_stack(anvil.rpc_url)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster for the session; skipped if PostgreSQL is not installed (fails in CI)."""
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1 requires them)")
        pytest.skip(reason)
    cluster = PgCluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(postgres: PgCluster) -> str:
    """URL of a fresh, empty PostgreSQL database."""
    return postgres.database()

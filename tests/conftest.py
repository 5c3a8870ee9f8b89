"""Shared fixtures: one anvil per test session, a fresh deployment per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from teebridge.anvil import Anvil
from tests.helpers import Stack, deploy_stack


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture
def stack(anvil: Anvil) -> Stack:
    return deploy_stack(anvil.rpc_url)

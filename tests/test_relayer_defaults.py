"""Relayer defaults that depend on the chain."""

from __future__ import annotations

import pytest

from relayer.service import DEFAULT_CONFIRMATIONS, default_confirmations


@pytest.mark.parametrize(("chain_id", "expected"), [(31337, 0), (1337, 0), (1, DEFAULT_CONFIRMATIONS), (8453, 3)])
def test_confirmations_default_to_zero_only_on_local_chains(chain_id: int, expected: int) -> None:
    assert default_confirmations(chain_id) == expected

"""``sign_batch``: the memo of recent signatures stands in for ECDSA recovery, and never widens what is signed."""

from __future__ import annotations

import pytest

import coprocessor.batch_signing as batch_signing
import coprocessor.keys as keys_module
from coprocessor.batch_signing import ForeignItemError, SignedItem, sign_batch
from coprocessor.keys import EnclaveKeys, KeySet
from verifier.protocol import Domain, Fulfillment, batch_digest
from verifier.signing import recover_signer

DOMAIN = Domain(31337, "0x" + "ab" * 20)
MEASUREMENT = b"\x07" * 32


def fulfillment(n: int) -> Fulfillment:
    return Fulfillment(n.to_bytes(32, "big"), b"\x01" * 32, 0, n.to_bytes(32, "big"), MEASUREMENT)


def signed_by(key_set: KeySet | EnclaveKeys, n: int) -> SignedItem:
    item = fulfillment(n)
    return SignedItem(item, key_set.sign(item.digest(DOMAIN)))


def test_items_this_key_just_signed_need_no_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = EnclaveKeys.generate()
    items = [signed_by(keys, n) for n in range(5)]

    def no_recovery(*_args: object) -> str:
        raise AssertionError("recovered a signature the memo holds")

    monkeypatch.setattr(batch_signing, "recover_signer", no_recovery)
    signer, signature = sign_batch(keys, MEASUREMENT, DOMAIN, items)
    assert signer == keys.signer_address
    assert recover_signer(batch_digest([i.fulfillment for i in items], DOMAIN), signature) == signer


def test_an_item_past_the_memo_is_still_checked_by_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "SIGNED_MEMO_SIZE", 3)
    keys = EnclaveKeys.generate()
    oldest = signed_by(keys, 0)
    newer = [signed_by(keys, n) for n in range(1, 4)]  # pushes item 0 out of the memo
    assert not keys.current.signed_recently(oldest.fulfillment.digest(DOMAIN))
    assert all(keys.current.signed_recently(i.fulfillment.digest(DOMAIN)) for i in newer)
    signer, _ = sign_batch(keys, MEASUREMENT, DOMAIN, [oldest, *newer])
    assert signer == keys.signer_address

    # a tampered item past the memo is refused by the recovery, naming it
    tampered = SignedItem(fulfillment(99), oldest.signature)
    with pytest.raises(ForeignItemError, match=r"fulfillments\[1\]"):
        sign_batch(keys, MEASUREMENT, DOMAIN, [newer[0], tampered])


def test_another_keys_items_are_refused_even_when_that_key_signed_them_here() -> None:
    keys = EnclaveKeys.generate()
    other = KeySet.generate()  # e.g. the key set before a rotation: its memo is not the current one's
    item = signed_by(other, 1)
    with pytest.raises(ForeignItemError, match=r"fulfillments\[0\] was signed by"):
        sign_batch(keys, MEASUREMENT, DOMAIN, [item])


def test_an_item_of_another_measurement_is_refused_before_any_signature_check() -> None:
    keys = EnclaveKeys.generate()
    item = signed_by(keys, 1)
    with pytest.raises(ForeignItemError, match="another measurement"):
        sign_batch(keys, b"\x08" * 32, DOMAIN, [item])

"""One signature over many fulfilments this enclave already signed (EIP-712 ``FulfillmentBatch``).

The Router's ``fulfillBatchSigned`` checks one signature for a whole batch instead of one per item, which is
most of what a batch saves. The relayer decides which results go into a transaction (some may have been
delivered by another relayer meanwhile, a block has a gas limit), so it asks for the batch signature when it
submits. The enclave signs a batch only if every item carries a valid signature of its *current* key: the
batch then states nothing the enclave has not already stated item by item, so this endpoint needs no trust in
the caller and runs no job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coprocessor.keys import EnclaveKeys
from verifier.protocol import Domain, Fulfillment, batch_digest
from verifier.signing import SignatureError, recover_signer


class ForeignItemError(ValueError):
    """An item of the batch was not signed by this enclave's current key (HTTP 409: ask its own enclave)."""


@dataclass(frozen=True, slots=True)
class SignedItem:
    """One fulfilment of the batch with its own EIP-712 signature."""

    fulfillment: Fulfillment
    signature: bytes


def sign_batch(keys: EnclaveKeys, measurement: bytes, domain: Domain, items: Sequence[SignedItem]) -> tuple[str, bytes]:
    """The signer and its 65-byte signature of ``FulfillmentBatch`` over ``items`` (in order), after checking
    each item's own signature.

    Raises :class:`ForeignItemError` naming the first item that another key (or another measurement) signed.
    """
    if not items:
        raise ValueError("a batch has at least one fulfilment")
    current = keys.current  # one key set throughout, even if a rotation activates meanwhile
    signer = current.signer_address
    for index, item in enumerate(items):
        if item.fulfillment.measurement != measurement:
            raise ForeignItemError(f"fulfillments[{index}] names another measurement than this enclave's")
        digest = item.fulfillment.digest(domain)
        if current.signed_recently(digest):
            continue  # this key signed it moments ago: the recovery below would name this signer
        try:
            recovered = recover_signer(digest, item.signature)
        except SignatureError as exc:
            raise ForeignItemError(f"fulfillments[{index}]: {exc}") from exc
        if recovered != signer:
            raise ForeignItemError(
                f"fulfillments[{index}] was signed by {recovered}, not by this enclave's current key {signer}"
            )
    return signer, current.sign(batch_digest([item.fulfillment for item in items], domain))

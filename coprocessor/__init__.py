"""The teebridge coprocessor: the enclave application and the trusted computing base.

It holds the enclave's sealed keys, runs jobs on request inputs (decrypting them inside when they are
encrypted to its HPKE key), signs EIP-712 ``Fulfillment`` results and serves its attestation over a small
HTTP API (``coprocessor.app``). Start it with ``python -m coprocessor``.

Keep this package small and its dependencies few: it imports ``verifier`` (the shared trust logic) and a
handful of libraries, never web3, eth_account, the relayer, the command line or ``verifier.gatekeeper``.
"""

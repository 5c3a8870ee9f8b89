"""Shared trust logic of teebridge: the signed-result schema, the commitment encoding, the input
envelope, attestation checks and the gatekeeper.

Both the coprocessor (trusted) and the relayer (untrusted) import this package; it imports neither.
Modules that need chain access (``verifier.gatekeeper``) import web3 lazily, so the coprocessor can use
the rest without pulling it in.
"""

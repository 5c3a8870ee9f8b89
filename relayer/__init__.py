"""The untrusted bridge between the chain and the coprocessors.

It watches the Router's ``Requested`` events, persists them, has a coprocessor answer them, checks the
signed answers and submits them. It can delay a result, never forge one: the Router checks every signature
against the enclave registry.
"""

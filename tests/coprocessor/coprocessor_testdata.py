"""Constants shared by the coprocessor tests (a uniquely named module, so it never shadows another)."""

CHAIN_ID = 31337
ROUTER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REQUESTER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER_REQUESTER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

LOCAL_EGRESS_ALLOW = ("127.0.0.1",)
"""The test servers listen on 127.0.0.1, which the enclave refuses by default (coprocessor.egress); the test
configs allow that one address, as the local stack does. Production configs leave ``egress_allow`` empty."""

"""A thin web3 client: one RPC endpoint (or a failover provider over several), one funded account, the teebridge
contracts by name."""

from __future__ import annotations

import os

# web3 and eth-utils hash through eth-hash, whose default backend (pycryptodome, through cffi) takes about 10 µs a
# call; point it at safe-pysha3's C Keccak (verifier.hashing's) unless the operator chose a backend. eth-hash reads
# this on its first hash, so it is set before web3 is imported.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.providers.base import BaseProvider
from web3.types import TxReceipt

from contracts.artifacts import load_artifact


def raw_request(w3: Web3, method: str, params: list[Any]) -> Any:
    """The ``result`` of one JSON-RPC call through ``w3``'s provider, without web3's result formatters.

    For the relayer's hot path (logs and receipts with hundreds of entries, where web3's formatting of every field
    cost more CPU than the work itself). Hex quantities stay ``0x`` strings. Raises ``ValueError`` on an error
    answer.
    """
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in response:
        raise ValueError(f"{method}: {response['error']}")
    return response.get("result")


def raw_receipt(w3: Web3, tx_hash: str) -> dict[str, Any] | None:
    """A transaction receipt as the node sent it, with ``status``, ``blockNumber``, ``gasUsed`` and
    ``effectiveGasPrice`` made ints and ``logs`` left raw; None if the node has none (not mined, or unknown)."""
    receipt = raw_request(w3, "eth_getTransactionReceipt", [tx_hash])
    if receipt is None:
        return None
    out = dict(receipt)
    for key in ("status", "blockNumber", "gasUsed", "effectiveGasPrice"):
        if isinstance(out.get(key), str):
            out[key] = int(out[key], 16)
    return out


class TransactionFailedError(RuntimeError):
    """A transaction was mined but reverted, or could not be sent."""


GAS_ESTIMATE_MARGIN = 1.2
GAS_ESTIMATE_EXTRA = 10_000


@dataclass
class ChainClient:
    """Web3 connection plus a local signing account."""

    rpc_url: str
    private_key: str
    timeout: float = 30.0
    provider: BaseProvider | None = None
    """Use this provider (e.g. :class:`relayer.rpc.FailoverProvider`) instead of an HTTP one for ``rpc_url``."""
    w3: Web3 = field(init=False)
    account: LocalAccount = field(init=False)

    def __post_init__(self) -> None:
        provider = self.provider or Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": self.timeout})
        self.w3 = Web3(provider)
        self.account = Account.from_key(self.private_key)

    @property
    def address(self) -> str:
        """The account's checksummed address."""
        return self.account.address

    @property
    def chain_id(self) -> int:
        """The chain id the RPC endpoint reports."""
        return self.w3.eth.chain_id

    def contract(self, name: str, address: str) -> Contract:
        """A contract handle from the committed artifact ``name`` at ``address``."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name).abi)

    def deploy(self, name: str, *args: Any) -> tuple[Contract, TxReceipt]:
        """Deploy the artifact ``name`` with constructor ``args``; wait for the receipt."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.send(factory.constructor(*args))
        return self.contract(name, receipt["contractAddress"]), receipt

    def send(self, call: Any, *, value: int = 0, gas: int | None = None) -> TxReceipt:
        """Sign and send a contract call (or constructor) from the account; raise if it reverts."""
        tx: dict[str, Any] = {"from": self.address, "value": value, "chainId": self.chain_id}
        if gas is not None:
            tx["gas"] = gas
        tx = call.build_transaction(tx)
        if gas is None:
            # the estimate is the least gas that succeeded on the state it ran on; the block the transaction
            # lands in may differ (seen on anvil under load: an exact estimate ran out by a few gas)
            tx["gas"] = int(tx["gas"] * GAS_ESTIMATE_MARGIN) + GAS_ESTIMATE_EXTRA
        tx["nonce"] = self.w3.eth.get_transaction_count(self.address, "pending")
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        if receipt["status"] != 1:
            raise TransactionFailedError(f"transaction {tx_hash.hex()} reverted{self._why(tx, receipt)}")
        return receipt

    def _why(self, tx: dict[str, Any], receipt: TxReceipt) -> str:
        """The revert data of a failed transaction, replayed as a call on the state before its block."""
        replay = {k: tx[k] for k in ("from", "to", "value", "data", "gas") if k in tx}
        try:
            self.w3.eth.call(replay, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except Exception as exc:  # web3 raises ContractLogicError / ContractCustomError with the data
            data = getattr(exc, "data", None) or str(exc)
            return f" ({type(exc).__name__}: {str(data)[:200]}; replayed on block {receipt['blockNumber'] - 1})"
        return f" (gas used {receipt['gasUsed']} of {tx.get('gas')}; the replay on the previous block succeeds)"

"""The teebridge client SDK: confidential requests, results and secrets from a dApp back end, a script or a test.

    from teebridge.sdk import TeeBridgeClient
    from verifier.protocol import job_id

    client = TeeBridgeClient.from_deployment("deployments/localhost.json", private_key=KEY)
    job = job_id("confidential.credit-score", 1)
    result_key = client.new_result_key()
    data = client.encrypt_input(payload, job, requester=consumer, result_key=result_key)
    sent = client.request(job, data, consumer=consumer)
    answer = client.wait(sent)
    plaintext = client.decrypt_result(answer, result_key)

Enclave keys come from the EnclaveRegistry only (signers registered, live and approved for the job), never
from an unauthenticated endpoint. docs/confidentiality.md explains the formats and the threat model.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from web3.logs import DISCARD

from relayer.chain import ChainClient
from teebridge.client import (
    Answer,
    EnclaveKey,
    Sent,
    build_input,
    is_sealed,
    live_enclave_keys,
    send_via_consumer,
    wait_for_answer,
)
from teebridge.deploy import Deployment
from verifier.envelope import ResultKey, decrypt_result, plain
from verifier.hashing import keccak256
from verifier.protocol import Status, parse_offchain_reference
from verifier.secrets import (
    SecretSetDeletion,
    SecretSetUpload,
    check_name,
    check_secret_values,
    secret_set_id,
    secrets_info,
    sign_deletion,
    sign_upload,
)
from verifier.suites import DEFAULT_SUITE, HpkeKeyPair, Suite, key_id, seal

__all__ = [
    "Answer",
    "EnclaveKey",
    "NoEnclaveError",
    "ResultMismatchError",
    "SecretsUploadError",
    "Sent",
    "TeeBridgeClient",
    "Uploaded",
]


class NoEnclaveError(LookupError):
    """No live enclave in the registry is approved for the job (or accepts the suite asked for)."""


class ResultMismatchError(RuntimeError):
    """An off-chain result that cannot be had, or whose bytes are not the ones the enclave signed."""


class SecretsUploadError(RuntimeError):
    """An enclave (or the relayer in front of it) refused a secret set upload or deletion."""


@dataclass(frozen=True)
class Uploaded:
    """One enclave's answer to a secret set upload or deletion."""

    signer: str
    secret_set_id: bytes
    version: int
    deleted: bool


class TeeBridgeClient:
    """A connection to one teebridge deployment: the registry, the router, and an account that signs.

    ``private_key`` is the account that sends requests and owns secret sets; it may be None for read-only
    use (fetching keys, waiting for answers, decrypting).
    """

    def __init__(self, rpc_url: str, deployment: Deployment, private_key: str | None = None) -> None:
        self.deployment = deployment
        # a read-only client gets a throwaway account: it can read and decrypt, never pay or sign as someone
        self.chain = ChainClient(rpc_url, private_key or "0x" + os.urandom(32).hex())
        self._owner_key = bytes.fromhex(private_key.removeprefix("0x")) if private_key else None
        self.registry = self.chain.contract("EnclaveRegistry", deployment.registry)
        self.router = self.chain.contract("Router", deployment.router)

    @classmethod
    def from_deployment(
        cls, path: str | Path, *, rpc_url: str = "http://127.0.0.1:8545", private_key: str | None = None
    ) -> TeeBridgeClient:
        """A client for the deployment record at ``path`` (``deployments/<network>.json``)."""
        return cls(rpc_url, Deployment.load(Path(path)), private_key)

    @property
    def address(self) -> str:
        """The signing account (requester of direct requests, owner of secret sets)."""
        if self._owner_key is None:
            raise ValueError("this client has no private key: pass private_key= to send or sign")
        return self.chain.address

    # ---------------------------------------------------------------- keys

    def enclave_keys(self, job_id: bytes, *, suite: Suite | None = None) -> list[EnclaveKey]:
        """Live enclaves approved for ``job_id`` (newest expiry first), optionally only those accepting ``suite``."""
        keys = live_enclave_keys(self.registry, job_id, self.deployment.deploy_block)
        return [k for k in keys if suite is None or suite in k.suites]

    def enclave_key(self, job_id: bytes, *, suite: Suite = DEFAULT_SUITE) -> EnclaveKey:
        """The live enclave to encrypt to for ``job_id`` (the one registered longest from now)."""
        keys = self.enclave_keys(job_id, suite=suite)
        if not keys:
            raise NoEnclaveError(
                f"no live enclave accepting suite {suite.label} is approved for job 0x{job_id.hex()}: is a "
                "coprocessor registered (`teebridge status`)?"
            )
        return keys[0]

    @staticmethod
    def new_result_key(suite: Suite = DEFAULT_SUITE) -> HpkeKeyPair:
        """A key pair for receiving an encrypted result; keep it off-chain (``to_bytes`` to store it)."""
        return HpkeKeyPair.generate(suite)

    # ---------------------------------------------------------------- requests

    def encrypt_input(
        self,
        payload: bytes,
        job_id: bytes,
        *,
        requester: str,
        suite: Suite = DEFAULT_SUITE,
        secret_set_id: bytes | None = None,
        result_key: HpkeKeyPair | ResultKey | None = None,
        enclave: EnclaveKey | None = None,
    ) -> bytes:
        """An input sealed to a live enclave for this job, bound to ``requester`` (the contract that will call
        the Router) and the options; ``result_key`` asks for the result to be encrypted to it."""
        target = enclave or self.enclave_key(job_id, suite=suite)
        return build_input(
            payload,
            encrypt_to=target,
            chain_id=self.deployment.chain_id,
            router=self.deployment.router,
            requester=requester,
            job_id=job_id,
            suite=suite,
            secret_set_id=secret_set_id,
            result_key=_result_key(result_key),
        )

    def plain_input(
        self,
        payload: bytes,
        *,
        secret_set_id: bytes | None = None,
        result_key: HpkeKeyPair | ResultKey | None = None,
    ) -> bytes:
        """An unencrypted input, with options (the payload goes on-chain as it is)."""
        return plain(payload, secret_set_id=secret_set_id, result_key=_result_key(result_key))

    def request(
        self,
        job_id: bytes,
        data: bytes,
        *,
        consumer: str | None = None,
        callback_gas_limit: int = 300_000,
        ttl: int = 3600,
        fee: int = 0,
    ) -> Sent:
        """Send a request: through an ExampleConsumer-style ``consumer`` (``send(jobId, input, gas, ttl)``), or
        straight to the Router from this account (then the requester is this account and no callback runs)."""
        if consumer is not None:
            return send_via_consumer(
                self.chain,
                self.chain.contract("ExampleConsumer", consumer),
                self.router,
                job_id,
                data,
                callback_gas_limit=callback_gas_limit,
                ttl=ttl,
                fee=fee,
            )
        receipt = self.chain.send(self.router.functions.request(job_id, data, callback_gas_limit, ttl), value=fee)
        (event,) = self.router.events.Requested().process_receipt(receipt, errors=DISCARD)
        block = self.chain.w3.eth.get_block(receipt["blockNumber"])
        return Sent(
            bytes(event["args"]["requestId"]),
            receipt["transactionHash"].to_0x_hex(),
            receipt["blockNumber"],
            block["timestamp"],
            is_sealed(data),
        )

    def wait(self, sent: Sent, *, timeout: float = 60.0) -> Answer:
        """Wait for the request's fulfilment on-chain; ``RequestTimeoutError`` after ``timeout`` seconds."""
        return self.wait_for(sent.request_id, sent.block_number, timeout=timeout)

    def wait_for(self, request_id: bytes, from_block: int, *, timeout: float = 60.0) -> Answer:
        """Wait for the fulfilment of ``request_id`` (sent by a contract of yours in ``from_block`` or later)."""
        return wait_for_answer(self.router, request_id, from_block=from_block, timeout=timeout)

    def result_bytes(self, answer: Answer, *, url: str | None = None, timeout: float = 10.0) -> bytes:
        """The answer's result bytes: as delivered on-chain, or, for status RESULT_OFFCHAIN, fetched from the
        relayer at ``url`` (``GET /v1/results/<requestId>``) and checked against the signed hash and length.
        Raises :class:`ResultMismatchError` if the relayer's bytes are not the signed ones."""
        if answer.status != Status.RESULT_OFFCHAIN:
            return answer.result
        if url is None:
            raise ValueError("this result is kept off-chain: pass url= (a relayer that delivered it)")
        expected_hash, length = parse_offchain_reference(answer.result)
        endpoint = f"{url.rstrip('/')}/v1/results/0x{answer.request_id.hex()}"
        try:
            response = httpx.get(endpoint, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ResultMismatchError(f"cannot fetch {endpoint}: {exc}") from exc
        if response.status_code != 200:
            raise ResultMismatchError(f"{endpoint} answered HTTP {response.status_code}: ask another relayer")
        full = response.content
        if len(full) != length or keccak256(full) != expected_hash:
            raise ResultMismatchError(
                f"{endpoint} served {len(full)} bytes that are not the signed result ({length} bytes, hash "
                f"0x{expected_hash.hex()}): that relayer is faulty or lying; ask another"
            )
        return full

    def decrypt_result(
        self, answer: Answer, result_key: HpkeKeyPair, *, url: str | None = None, timeout: float = 10.0
    ) -> bytes:
        """Open an encrypted result (any status) with the key the request named; ``url`` as for
        :meth:`result_bytes` when the result is kept off-chain."""
        sealed = self.result_bytes(answer, url=url, timeout=timeout)
        return decrypt_result(sealed, result_key, self.deployment.chain_id, self.deployment.router, answer.request_id)

    # ---------------------------------------------------------------- secrets

    def secret_set_id(self, job_id: bytes, name: str, *, owner: str | None = None) -> bytes:
        """The id a request names (option 0x10) to use ``owner``'s (default: this account's) set ``name``."""
        return secret_set_id(self.deployment.chain_id, owner or self.address, job_id, check_name(name))

    def upload_secrets(
        self,
        job_id: bytes,
        name: str,
        values: Mapping[str, str],
        *,
        url: str,
        requesters: Sequence[str] = (),
        expires_at: int = 0,
        version: int | None = None,
        suite: Suite = DEFAULT_SUITE,
        timeout: float = 10.0,
    ) -> list[Uploaded]:
        """Encrypt ``values`` to every live enclave of the job, sign and upload to ``url`` (a coprocessor, or a
        relayer that forwards to its coprocessors). ``version`` defaults to the current time in milliseconds,
        so a later call replaces an earlier one (rotation). Raises :class:`SecretsUploadError` naming the
        enclave that refused."""
        check_name(name)
        plaintext = json.dumps(check_secret_values(dict(values)), sort_keys=True).encode()
        version = version if version is not None else time.time_ns() // 1_000_000
        owner, chain_id = self.address, self.deployment.chain_id
        info = secrets_info(chain_id, owner, job_id, name)
        answers = []
        for enclave in self.enclave_keys(job_id, suite=suite) or [self.enclave_key(job_id, suite=suite)]:
            public_key = enclave.public_key(suite)
            ciphertext = bytes([suite]) + key_id(public_key) + seal(suite, public_key, plaintext, info)
            unsigned = SecretSetUpload(
                owner, chain_id, job_id, name, version, expires_at, tuple(requesters), ciphertext, b""
            )
            upload = sign_upload(self._signing_key(), unsigned)
            answers.append(self._post(url, "/v1/secrets", upload.to_json(), enclave.signer, timeout))
        return answers

    def delete_secrets(
        self, job_id: bytes, name: str, *, url: str, version: int | None = None, timeout: float = 10.0
    ) -> Uploaded:
        """Delete this account's secret set ``name`` for the job (a signed tombstone at ``version``)."""
        version = version if version is not None else time.time_ns() // 1_000_000
        unsigned = SecretSetDeletion(self.address, self.deployment.chain_id, job_id, check_name(name), version, b"")
        deletion = sign_deletion(self._signing_key(), unsigned)
        return self._post(url, "/v1/secrets/delete", deletion.to_json(), "", timeout)

    def _signing_key(self) -> bytes:
        if self._owner_key is None:
            raise ValueError("this client has no private key: pass private_key= to sign secret sets")
        return self._owner_key

    @staticmethod
    def _post(url: str, path: str, body: dict[str, Any], signer: str, timeout: float) -> Uploaded:
        try:
            response = httpx.post(url.rstrip("/") + path, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise SecretsUploadError(f"cannot reach {url}: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text[:300]
            who = f" for enclave {signer}" if signer else ""
            raise SecretsUploadError(
                f"{url}{path} refused the secret set{who} (HTTP {response.status_code}): {message}"
            )
        doc = response.json()
        return Uploaded(signer, bytes.fromhex(doc["secretSetId"][2:]), int(doc["version"]), bool(doc["deleted"]))


def _result_key(key: HpkeKeyPair | ResultKey | None) -> ResultKey | None:
    if key is None or isinstance(key, ResultKey):
        return key
    return ResultKey(key.suite, key.public_key)

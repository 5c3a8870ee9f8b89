"""Job input envelopes (plain or HPKE-sealed to an enclave key, with options) and encrypted results.

An input is zero or more options followed by a body (docs/protocol.md, "Input envelope")::

    input   = [0x10 || secretSetId(32)] [0x11 || suite(1) || resultPublicKey] || body
    body    = 0x00 || payload                                   plain
            | suite(1) || keyId(8) || enc || ciphertext         sealed to an enclave key (suite 0x01 or 0x02)

Options appear at most once each, in ascending tag order. ``0x10`` names the job owner's secret set the job
may use; ``0x11`` asks for the result to be encrypted to the requester's own key. Because the whole input
is hashed into the request's on-chain commitment, a relayer cannot add, drop or swap an option.

A sealed body's HPKE ``info`` binds the request context *and the options*::

    info = "teebridge/v1/input" || uint256 chainId || router || requester || jobId || keccak256(options)

so a ciphertext copied into another request, chain, router, job or next to other options (say, an attacker's
result key) does not open. ``keyId = keccak256(enclavePublicKey)[0:8]`` names the enclave key.

An encrypted result (when option 0x11 is present) is ``suite || enc || ciphertext`` with
``info = "teebridge/v1/result" || uint256 chainId || router || requestId``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from verifier.hashing import keccak256
from verifier.hexutil import address_bytes
from verifier.protocol import word
from verifier.suites import (
    AEAD_TAG_LENGTH,
    DEFAULT_SUITE,
    KEY_ID_LENGTH,
    DecryptionError,
    HpkeKeyPair,
    Suite,
    key_id,
    public_key_object,
    seal,
)

ENVELOPE_PLAIN = 0x00
OPTION_SECRET_SET = 0x10
OPTION_RESULT_KEY = 0x11
SECRET_SET_ID_LENGTH = 32

INPUT_INFO_TAG = b"teebridge/v1/input"
RESULT_INFO_TAG = b"teebridge/v1/result"
INFO_TAG = INPUT_INFO_TAG  # the name docs/protocol.md used before results were encrypted

__all__ = [
    "ENVELOPE_PLAIN",
    "OPTION_RESULT_KEY",
    "OPTION_SECRET_SET",
    "Binding",
    "EnvelopeError",
    "KeyLookup",
    "OpenedInput",
    "ResultKey",
    "decrypt_result",
    "encrypt",
    "encrypt_result",
    "key_id",
    "open_input",
    "parse_input",
    "plain",
]


class EnvelopeError(ValueError):
    """An input envelope that is malformed or cannot be opened.

    ``decryption`` is True when the envelope is well formed but its ciphertext does not open (signed status
    DECRYPTION_FAILED); ``unknown_key`` when it names an enclave key this enclave does not hold (anymore)
    (status UNKNOWN_KEY); neither for a malformed envelope (INVALID_INPUT).
    """

    def __init__(self, message: str, *, decryption: bool = False, unknown_key: bool = False) -> None:
        super().__init__(message)
        self.decryption = decryption
        self.unknown_key = unknown_key


@dataclass(frozen=True, slots=True)
class Binding:
    """The request context a sealed input is bound to."""

    chain_id: int
    router: str
    requester: str
    job_id: bytes

    def info(self, options: bytes = b"") -> bytes:
        """HPKE ``info`` for a sealed input preceded by these option bytes (see the module docstring)."""
        return (
            INPUT_INFO_TAG
            + word(self.chain_id)
            + address_bytes(self.router)
            + address_bytes(self.requester)
            + self.job_id
            + keccak256(options)
        )


@dataclass(frozen=True, slots=True)
class ResultKey:
    """A requester's public key that the result is to be encrypted to."""

    suite: Suite
    public_key: bytes

    def __post_init__(self) -> None:
        public_key_object(self.suite, self.public_key)  # validates the length and the point

    def encode(self) -> bytes:
        """The option bytes: ``0x11 || suite || publicKey``."""
        return bytes([OPTION_RESULT_KEY, self.suite]) + self.public_key


@dataclass(frozen=True, slots=True)
class ParsedInput:
    """An input split into its options and its body, nothing decrypted yet."""

    options: bytes
    secret_set_id: bytes | None
    result_key: ResultKey | None
    suite: Suite | None
    """None for a plain body."""
    key_id: bytes | None
    body: bytes
    """The plain payload, or ``enc || ciphertext`` of a sealed body."""


@dataclass(frozen=True, slots=True)
class OpenedInput:
    """An input with its payload in the clear, and the options that came with it."""

    payload: bytes
    secret_set_id: bytes | None
    result_key: ResultKey | None
    encrypted: bool


KeyLookup = Callable[[Suite, bytes], HpkeKeyPair | None]
"""``lookup(suite, keyId)``: the enclave's private key with that id, or None if it holds none (anymore)."""


def plain(payload: bytes, *, secret_set_id: bytes | None = None, result_key: ResultKey | None = None) -> bytes:
    """A plain (unencrypted) job input, with options."""
    return _options(secret_set_id, result_key) + bytes([ENVELOPE_PLAIN]) + payload


def encrypt(
    payload: bytes,
    recipient_public_key: bytes,
    binding: Binding,
    *,
    suite: Suite = DEFAULT_SUITE,
    secret_set_id: bytes | None = None,
    result_key: ResultKey | None = None,
) -> bytes:
    """Seal a job input to an enclave's ``suite`` public key, bound to ``binding`` and the options."""
    options = _options(secret_set_id, result_key)
    sealed = seal(suite, recipient_public_key, payload, binding.info(options))
    return options + bytes([suite]) + key_id(recipient_public_key) + sealed


def parse_input(data: bytes) -> ParsedInput:
    """Split an input into options and body; :class:`EnvelopeError` if it is malformed."""
    offset = 0
    secret_set_id: bytes | None = None
    result_key: ResultKey | None = None
    last_tag = -1
    while offset < len(data) and data[offset] in (OPTION_SECRET_SET, OPTION_RESULT_KEY):
        tag = data[offset]
        if tag <= last_tag:
            raise EnvelopeError(f"option 0x{tag:02x} repeated or out of order: options appear once each, ascending")
        last_tag = tag
        if tag == OPTION_SECRET_SET:
            end = offset + 1 + SECRET_SET_ID_LENGTH
            if end > len(data):
                raise EnvelopeError("secret set option (0x10) is truncated: it carries a 32-byte id")
            secret_set_id = data[offset + 1 : end]
        else:
            if offset + 1 >= len(data):
                raise EnvelopeError("result key option (0x11) is truncated")
            try:
                suite = Suite(data[offset + 1])
            except ValueError:
                raise EnvelopeError(f"result key option names unknown suite 0x{data[offset + 1]:02x}") from None
            end = offset + 2 + suite.public_key_length
            if end > len(data):
                raise EnvelopeError(f"result key option is truncated: a {suite.label} key is {suite.public_key_length}")
            try:
                result_key = ResultKey(suite, data[offset + 2 : end])
            except ValueError as exc:
                raise EnvelopeError(f"result key option: {exc}") from None
        offset = end
    options, rest = data[:offset], data[offset:]
    if not rest:
        raise EnvelopeError("empty input body: it must start with 0x00 (plain) or a suite byte (0x01, 0x02)")
    kind = rest[0]
    if kind == ENVELOPE_PLAIN:
        return ParsedInput(options, secret_set_id, result_key, None, None, rest[1:])
    try:
        suite = Suite(kind)
    except ValueError:
        raise EnvelopeError(
            f"unknown envelope kind 0x{kind:02x}: expected 0x00 (plain), 0x01 (HPKE x25519), "
            "0x02 (HPKE mlkem768-x25519), or an option 0x10/0x11 first"
        ) from None
    if len(rest) < 1 + KEY_ID_LENGTH + suite.enc_length + AEAD_TAG_LENGTH:
        raise EnvelopeError(f"sealed {suite.label} input too short to hold key id, encapsulated key and tag")
    return ParsedInput(
        options, secret_set_id, result_key, suite, rest[1 : 1 + KEY_ID_LENGTH], rest[1 + KEY_ID_LENGTH :]
    )


def open_input(data: bytes, binding: Binding, lookup: KeyLookup) -> OpenedInput:
    """Parse an input and decrypt its body if it is sealed, with the key ``lookup`` finds for its key id."""
    parsed = parse_input(data)
    if parsed.suite is None:
        return OpenedInput(parsed.body, parsed.secret_set_id, parsed.result_key, False)
    assert parsed.key_id is not None
    private_key = lookup(parsed.suite, parsed.key_id)
    if private_key is None:
        raise EnvelopeError(
            f"input was sealed to {parsed.suite.label} key 0x{parsed.key_id.hex()}, which this enclave does not "
            "hold (retired after a key rotation, or another enclave's); fetch the live keys from the registry",
            unknown_key=True,
        )
    try:
        payload = private_key.open(parsed.body, binding.info(parsed.options))
    except DecryptionError as exc:
        raise EnvelopeError(
            "ciphertext does not open: it was tampered with, or sealed for another chain, router, requester, "
            "job or other options",
            decryption=True,
        ) from exc
    return OpenedInput(payload, parsed.secret_set_id, parsed.result_key, True)


def result_info(chain_id: int, router: str, request_id: bytes) -> bytes:
    """HPKE ``info`` of an encrypted result: ``"teebridge/v1/result" || chainId || router || requestId``."""
    return RESULT_INFO_TAG + word(chain_id) + address_bytes(router) + request_id


def encrypt_result(result: bytes, key: ResultKey, chain_id: int, router: str, request_id: bytes) -> bytes:
    """Seal result bytes to the requester's key: ``suite || enc || ciphertext``."""
    return bytes([key.suite]) + seal(key.suite, key.public_key, result, result_info(chain_id, router, request_id))


def decrypt_result(sealed: bytes, private_key: HpkeKeyPair, chain_id: int, router: str, request_id: bytes) -> bytes:
    """Open an encrypted result with the requester's private key; :class:`DecryptionError` if it does not."""
    if not sealed or sealed[0] != private_key.suite:
        raise DecryptionError(
            f"result is not sealed with suite {private_key.suite.label} (first byte "
            f"{'none' if not sealed else f'0x{sealed[0]:02x}'})"
        )
    return private_key.open(sealed[1:], result_info(chain_id, router, request_id))


def _options(secret_set_id: bytes | None, result_key: ResultKey | None) -> bytes:
    out = b""
    if secret_set_id is not None:
        if len(secret_set_id) != SECRET_SET_ID_LENGTH:
            raise ValueError("a secret set id is 32 bytes")
        out += bytes([OPTION_SECRET_SET]) + secret_set_id
    if result_key is not None:
        out += result_key.encode()
    return out

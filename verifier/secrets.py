"""Sealed job secrets: the signed upload and deletion a job owner sends, and the ids and HPKE context they use.

A job owner (an Ethereum account) encrypts a secret set, a JSON object of name -> string value, to an
enclave's HPKE key and signs an EIP-712 ``SecretSet`` over it (docs/confidentiality.md, "Sealed secrets")::

    secretSetId = keccak256(abi.encode(uint256 chainId, address owner, bytes32 jobId, keccak256(name)))
    info        = "teebridge/v1/secrets" || uint256 chainId || owner || jobId || keccak256(name)
    ciphertext  = suite || keyId(8) || enc || HPKE-seal(json, info)        (same body layout as an input)

    SecretSet(uint256 chainId,bytes32 jobId,string name,uint64 version,uint64 expiresAt,
              address[] requesters,bytes32 ciphertextHash)
    SecretSetDeletion(uint256 chainId,bytes32 jobId,string name,uint64 version)
    domain: EIP712Domain(string name,string version) with name "teebridge secrets", version "1"

``info`` binds the owner, so a ciphertext seen on its way through a relayer cannot be re-uploaded under
another owner's name. ``version`` only ever grows per secret set (a replayed older upload or deletion is
refused). ``requesters`` are the contracts (or accounts) whose requests may use the set, besides the owner;
``expiresAt`` (0: never) ends it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from verifier.hashing import keccak256
from verifier.hexutil import address_bytes, from_hex, to_checksum_address, to_hex
from verifier.protocol import address_word, word
from verifier.signing import SignatureError, recover_signer, sign_digest

SECRETS_INFO_TAG = b"teebridge/v1/secrets"
SECRETS_DOMAIN_NAME = "teebridge secrets"
SECRETS_DOMAIN_VERSION = "1"
SECRETS_DOMAIN_TYPE = "EIP712Domain(string name,string version)"
SECRET_SET_TYPE = (
    "SecretSet(uint256 chainId,bytes32 jobId,string name,uint64 version,uint64 expiresAt,"
    "address[] requesters,bytes32 ciphertextHash)"
)
SECRET_SET_DELETION_TYPE = "SecretSetDeletion(uint256 chainId,bytes32 jobId,string name,uint64 version)"
MAX_NAME_LENGTH = 64
MAX_REQUESTERS = 32
MAX_SECRETS = 32
MAX_SECRET_BYTES = 8192
MIN_SECRET_VALUE_LENGTH = 8
"""Shorter values are refused: the coprocessor withholds any result that contains a secret value, which
only works for values too long to occur by chance."""
UINT64_MAX = 2**64 - 1


class SecretSetError(ValueError):
    """A malformed or unauthentic secret set upload or deletion; the message says what to fix."""


def _domain_separator() -> bytes:
    return keccak256(
        keccak256(SECRETS_DOMAIN_TYPE.encode())
        + keccak256(SECRETS_DOMAIN_NAME.encode())
        + keccak256(SECRETS_DOMAIN_VERSION.encode())
    )


DOMAIN_SEPARATOR = _domain_separator()


def secret_set_id(chain_id: int, owner: str, job_id: bytes, name: str) -> bytes:
    """``keccak256(abi.encode(chainId, owner, jobId, keccak256(name)))``: the id a request names."""
    return keccak256(word(chain_id) + address_word(owner) + job_id + keccak256(name.encode()))


def secrets_info(chain_id: int, owner: str, job_id: bytes, name: str) -> bytes:
    """HPKE ``info`` of a secret set ciphertext (see the module docstring)."""
    return SECRETS_INFO_TAG + word(chain_id) + address_bytes(owner) + job_id + keccak256(name.encode())


def check_name(name: str) -> str:
    """A secret set name: 1-64 printable ASCII characters."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or not name.isascii()
        or not name.isprintable()
    ):
        raise SecretSetError(f"name must be 1-{MAX_NAME_LENGTH} printable ASCII characters")
    return name


def check_secret_values(values: Any) -> dict[str, str]:
    """The decrypted payload: a JSON object of at most 32 names to string values of at least 8 characters.

    Error messages name the offending *name*, never a value.
    """
    if not isinstance(values, Mapping) or not values:
        raise SecretSetError("the secrets must be a non-empty JSON object of name -> string value")
    if len(values) > MAX_SECRETS:
        raise SecretSetError(f"at most {MAX_SECRETS} secrets per set")
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME_LENGTH or not key.isascii():
            raise SecretSetError(f"secret names are 1-{MAX_NAME_LENGTH} ASCII characters")
        if not isinstance(value, str):
            raise SecretSetError(f"secret {key!r} must be a string")
        if len(value) < MIN_SECRET_VALUE_LENGTH:
            raise SecretSetError(f"secret {key!r} is shorter than {MIN_SECRET_VALUE_LENGTH} characters")
        out[key] = value
    return out


class _OwnerSigned:
    """What an upload and a deletion share: the set they name and the owner's signature over ``digest()``."""

    __slots__ = ()
    owner: str
    chain_id: int
    job_id: bytes
    name: str
    signature: bytes

    def digest(self) -> bytes:  # pragma: no cover - each message defines its own
        raise NotImplementedError

    @property
    def secret_set_id(self) -> bytes:
        """The id of the set, as requests name it."""
        return secret_set_id(self.chain_id, self.owner, self.job_id, self.name)

    def verify(self) -> None:
        """Check the owner's signature; :class:`SecretSetError` if it is not the owner's."""
        _check_signer(self.digest(), self.signature, self.owner)


@dataclass(frozen=True, slots=True)
class SecretSetUpload(_OwnerSigned):
    """A signed upload: everything but the plaintext, which only the enclave sees."""

    owner: str
    chain_id: int
    job_id: bytes
    name: str
    version: int
    expires_at: int
    requesters: tuple[str, ...]
    ciphertext: bytes
    signature: bytes

    def digest(self) -> bytes:
        """The EIP-712 digest the owner signs."""
        return upload_digest(
            self.chain_id, self.job_id, self.name, self.version, self.expires_at, self.requesters, self.ciphertext
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/secrets``."""
        return {
            "owner": self.owner,
            "chainId": self.chain_id,
            "jobId": to_hex(self.job_id),
            "name": self.name,
            "version": self.version,
            "expiresAt": self.expires_at,
            "requesters": list(self.requesters),
            "ciphertext": to_hex(self.ciphertext),
            "signature": to_hex(self.signature),
        }

    @classmethod
    def from_json(cls, doc: Any) -> SecretSetUpload:
        """Parse ``POST /v1/secrets``; :class:`SecretSetError` names the bad field."""
        fields = _require(doc, ("owner", "chainId", "jobId", "name", "version", "expiresAt", "requesters"))
        requesters = fields["requesters"]
        if not isinstance(requesters, list) or len(requesters) > MAX_REQUESTERS:
            raise SecretSetError(f"requesters must be a list of at most {MAX_REQUESTERS} addresses")
        return cls(
            owner=_address(fields["owner"], "owner"),
            chain_id=_uint(fields["chainId"], "chainId", 2**256 - 1, positive=True),
            job_id=_bytes(fields["jobId"], "jobId", 32),
            name=check_name(fields["name"]),
            version=_uint(fields["version"], "version", UINT64_MAX, positive=True),
            expires_at=_uint(fields["expiresAt"], "expiresAt", UINT64_MAX),
            requesters=tuple(_address(r, "requesters[]") for r in requesters),
            ciphertext=_bytes(_field(doc, "ciphertext"), "ciphertext"),
            signature=_bytes(_field(doc, "signature"), "signature", 65),
        )


@dataclass(frozen=True, slots=True)
class SecretSetDeletion(_OwnerSigned):
    """A signed deletion of a secret set (a tombstone at ``version``)."""

    owner: str
    chain_id: int
    job_id: bytes
    name: str
    version: int
    signature: bytes

    def digest(self) -> bytes:
        """The EIP-712 digest the owner signs."""
        return deletion_digest(self.chain_id, self.job_id, self.name, self.version)

    def to_json(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/secrets/delete``."""
        return {
            "owner": self.owner,
            "chainId": self.chain_id,
            "jobId": to_hex(self.job_id),
            "name": self.name,
            "version": self.version,
            "signature": to_hex(self.signature),
        }

    @classmethod
    def from_json(cls, doc: Any) -> SecretSetDeletion:
        """Parse ``POST /v1/secrets/delete``; :class:`SecretSetError` names the bad field."""
        fields = _require(doc, ("owner", "chainId", "jobId", "name", "version", "signature"))
        return cls(
            owner=_address(fields["owner"], "owner"),
            chain_id=_uint(fields["chainId"], "chainId", 2**256 - 1, positive=True),
            job_id=_bytes(fields["jobId"], "jobId", 32),
            name=check_name(fields["name"]),
            version=_uint(fields["version"], "version", UINT64_MAX, positive=True),
            signature=_bytes(fields["signature"], "signature", 65),
        )


def upload_digest(
    chain_id: int,
    job_id: bytes,
    name: str,
    version: int,
    expires_at: int,
    requesters: Sequence[str],
    ciphertext: bytes,
) -> bytes:
    """EIP-712 digest of a ``SecretSet``."""
    requesters_hash = keccak256(b"".join(address_word(r) for r in requesters))
    struct_hash = keccak256(
        keccak256(SECRET_SET_TYPE.encode())
        + word(chain_id)
        + job_id
        + keccak256(name.encode())
        + word(version)
        + word(expires_at)
        + requesters_hash
        + keccak256(ciphertext)
    )
    return keccak256(b"\x19\x01" + DOMAIN_SEPARATOR + struct_hash)


def deletion_digest(chain_id: int, job_id: bytes, name: str, version: int) -> bytes:
    """EIP-712 digest of a ``SecretSetDeletion``."""
    struct_hash = keccak256(
        keccak256(SECRET_SET_DELETION_TYPE.encode())
        + word(chain_id)
        + job_id
        + keccak256(name.encode())
        + word(version)
    )
    return keccak256(b"\x19\x01" + DOMAIN_SEPARATOR + struct_hash)


def sign_upload(owner_key: bytes, upload: SecretSetUpload) -> SecretSetUpload:
    """``upload`` with the owner's signature (``owner_key`` is the owner's 32-byte private key)."""
    from dataclasses import replace

    return replace(upload, signature=sign_digest(owner_key, upload.digest()))


def sign_deletion(owner_key: bytes, deletion: SecretSetDeletion) -> SecretSetDeletion:
    """``deletion`` with the owner's signature."""
    from dataclasses import replace

    return replace(deletion, signature=sign_digest(owner_key, deletion.digest()))


def _check_signer(digest: bytes, signature: bytes, owner: str) -> None:
    try:
        signer = recover_signer(digest, signature)
    except SignatureError as exc:
        raise SecretSetError(f"signature is malformed: {exc}") from None
    if signer.lower() != owner.lower():
        raise SecretSetError(f"signature is by {signer}, not by the owner {owner}: sign with the owner's key")


def _field(doc: Any, name: str) -> Any:
    if not isinstance(doc, Mapping) or name not in doc:
        raise SecretSetError(f"the body is missing {name}")
    return doc[name]


def _require(doc: Any, names: Sequence[str]) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise SecretSetError("the body must be a JSON object")
    missing = [n for n in names if n not in doc]
    if missing:
        raise SecretSetError(f"the body is missing {', '.join(missing)}")
    return {n: doc[n] for n in names}


def _address(value: Any, name: str) -> str:
    try:
        return to_checksum_address(from_hex(value, 20))
    except (ValueError, TypeError, AttributeError):
        raise SecretSetError(f"{name} must be a 0x-prefixed 20-byte address") from None


def _bytes(value: Any, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise SecretSetError(f"{name} must be 0x-prefixed hex")
    try:
        return from_hex(value, length)
    except ValueError as exc:
        raise SecretSetError(f"{name}: {exc}") from None


def _uint(value: Any, name: str, maximum: int, *, positive: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (1 if positive else 0) <= value <= maximum:
        raise SecretSetError(f"{name} must be an integer in {1 if positive else 0}..{maximum}")
    return value

"""The HPKE suites teebridge speaks, enclave key pairs for them, and the key bundle the registry publishes.

Two suites (RFC 9180 base mode, HKDF-SHA256, ChaCha20-Poly1305), named by one byte that is the same
everywhere it appears (input envelopes, result envelopes, key bundles, the registry's suite mask):

    0x01  x25519             DHKEM(X25519, HKDF-SHA256)   KEM 0x0020  public key 32 B    enc 32 B
    0x02  mlkem768-x25519    ML-KEM-768 + X25519 (X-Wing) KEM 0x647a  public key 1216 B  enc 1120 B

The second is the hybrid post-quantum KEM of ``cryptography``'s ``hpke`` module: secure while either
ML-KEM-768 or X25519 holds. An enclave's **key bundle** is ``suite || publicKey`` for each suite it accepts,
in ascending suite order; it is what report_data binds (``keccak256(bundle)``) and what the registry stores.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from verifier.hashing import keccak256

KEY_ID_LENGTH = 8
AEAD_TAG_LENGTH = 16
MLKEM768_PUBLIC_KEY_LENGTH = 1184
MLKEM768_SEED_LENGTH = 64
MLKEM768_CIPHERTEXT_LENGTH = 1088
X25519_KEY_LENGTH = 32


class Suite(IntEnum):
    """An HPKE suite by its one-byte teebridge id."""

    X25519 = 0x01
    """DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305: the default."""
    MLKEM768_X25519 = 0x02
    """ML-KEM-768 + X25519 hybrid (X-Wing, KEM id 0x647a), HKDF-SHA256, ChaCha20-Poly1305: post-quantum."""

    @property
    def label(self) -> str:
        """The suite's name on the command line and in JSON (``x25519``, ``mlkem768-x25519``)."""
        return SUITE_LABELS[self]

    @property
    def public_key_length(self) -> int:
        """Bytes in a public key of this suite."""
        return 32 if self is Suite.X25519 else MLKEM768_PUBLIC_KEY_LENGTH + X25519_KEY_LENGTH

    @property
    def enc_length(self) -> int:
        """Bytes in the encapsulated key that starts every ciphertext of this suite."""
        return X25519_KEY_LENGTH if self is Suite.X25519 else MLKEM768_CIPHERTEXT_LENGTH + X25519_KEY_LENGTH

    @property
    def hpke_suite(self) -> hpke.Suite:
        """The ``cryptography`` suite object."""
        return _HPKE[self]

    @property
    def mask(self) -> int:
        """This suite's bit in a suite mask (``1 << id``), as the registry's ``hpkeSuites`` returns it."""
        return 1 << int(self)

    @classmethod
    def parse(cls, value: str | int) -> Suite:
        """A suite from its label or id; ``ValueError`` naming the known ones otherwise."""
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                pass
        else:
            for suite, label in SUITE_LABELS.items():
                if value.strip().lower() in (label, suite.name.lower()):
                    return suite
        known = ", ".join(f"{s.label} (0x{int(s):02x})" for s in cls)
        raise ValueError(f"unknown HPKE suite {value!r}; known: {known}")


SUITE_LABELS = {Suite.X25519: "x25519", Suite.MLKEM768_X25519: "mlkem768-x25519"}
DEFAULT_SUITE = Suite.X25519
_HPKE = {
    Suite.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    Suite.MLKEM768_X25519: hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
}

PublicKeyObject = Union[X25519PublicKey, hpke.MLKEM768X25519PublicKey]  # noqa: UP007 - runtime alias
PrivateKeyObject = Union[X25519PrivateKey, hpke.MLKEM768X25519PrivateKey]  # noqa: UP007


class DecryptionError(ValueError):
    """A ciphertext that does not open: tampered, truncated, or sealed for another key or context."""


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id of an HPKE public key: ``keccak256(publicKey)[0:8]``."""
    return keccak256(public_key)[:KEY_ID_LENGTH]


def public_key_object(suite: Suite, public_key: bytes) -> PublicKeyObject:
    """The ``cryptography`` public key for raw ``public_key`` bytes of ``suite``; ``ValueError`` if malformed."""
    if len(public_key) != suite.public_key_length:
        raise ValueError(f"a {suite.label} public key is {suite.public_key_length} bytes, got {len(public_key)}")
    if suite is Suite.X25519:
        return X25519PublicKey.from_public_bytes(public_key)
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(public_key[:MLKEM768_PUBLIC_KEY_LENGTH]),
        X25519PublicKey.from_public_bytes(public_key[MLKEM768_PUBLIC_KEY_LENGTH:]),
    )


def seal(suite: Suite, public_key: bytes, plaintext: bytes, info: bytes) -> bytes:
    """HPKE base-mode single-shot encryption: ``enc || ciphertext`` (empty AAD)."""
    return suite.hpke_suite.encrypt(plaintext, public_key_object(suite, public_key), info=info)


class HpkeKeyPair:
    """An HPKE private key of one suite. ``repr`` shows only the suite and the key id.

    The secret serialisation (:meth:`to_bytes`) is the X25519 scalar (32 bytes) or, for the hybrid suite,
    the ML-KEM-768 seed ``d || z`` (64 bytes) followed by the X25519 scalar: the X-Wing expanded secret key.
    """

    __slots__ = ("_private", "_secret", "public_key", "suite")

    def __init__(self, suite: Suite, secret: bytes) -> None:
        self.suite = suite
        self._secret = secret
        if suite is Suite.X25519:
            if len(secret) != X25519_KEY_LENGTH:
                raise ValueError("an X25519 private key is 32 bytes")
            x_private = X25519PrivateKey.from_private_bytes(secret)
            self._private: PrivateKeyObject = x_private
            self.public_key: bytes = x_private.public_key().public_bytes_raw()
        else:
            if len(secret) != MLKEM768_SEED_LENGTH + X25519_KEY_LENGTH:
                raise ValueError("an ML-KEM-768 + X25519 private key is a 64-byte seed and a 32-byte scalar")
            m_private = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:MLKEM768_SEED_LENGTH])
            x_private = X25519PrivateKey.from_private_bytes(secret[MLKEM768_SEED_LENGTH:])
            self._private = hpke.MLKEM768X25519PrivateKey(m_private, x_private)
            self.public_key = m_private.public_key().public_bytes_raw() + x_private.public_key().public_bytes_raw()
        """The raw public key requesters encrypt to."""

    @classmethod
    def generate(cls, suite: Suite) -> HpkeKeyPair:
        """A fresh key pair from the OS randomness."""
        if suite is Suite.X25519:
            return cls(suite, X25519PrivateKey.generate().private_bytes_raw())
        m_seed = mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
        return cls(suite, m_seed + X25519PrivateKey.generate().private_bytes_raw())

    @property
    def key_id(self) -> bytes:
        """``keccak256(publicKey)[0:8]``."""
        return key_id(self.public_key)

    def open(self, sealed: bytes, info: bytes) -> bytes:
        """Decrypt ``enc || ciphertext``; :class:`DecryptionError` if it does not authenticate."""
        if len(sealed) < self.suite.enc_length + AEAD_TAG_LENGTH:
            raise DecryptionError(f"{self.suite.label} ciphertext too short to hold the encapsulated key and tag")
        try:
            return self.suite.hpke_suite.decrypt(sealed, self._private, info=info)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("ciphertext does not open under this key and context") from exc

    def to_bytes(self) -> bytes:
        """The secret serialisation (see the class docstring)."""
        return self._secret

    def __repr__(self) -> str:
        return f"HpkeKeyPair(suite={self.suite.label}, key_id=0x{self.key_id.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("HpkeKeyPair cannot be pickled: key material stays where it was made")


def encode_key_bundle(public_keys: dict[Suite, bytes]) -> bytes:
    """``suite || publicKey`` for each suite, ascending: the bundle the registry stores and report_data binds."""
    if not public_keys:
        raise ValueError("a key bundle holds at least one suite's key")
    out = bytearray()
    for suite in sorted(public_keys):
        key = public_keys[suite]
        if len(key) != suite.public_key_length:
            raise ValueError(f"a {suite.label} public key is {suite.public_key_length} bytes, got {len(key)}")
        out += bytes([suite]) + key
    return bytes(out)


def parse_key_bundle(bundle: bytes) -> dict[Suite, bytes]:
    """Inverse of :func:`encode_key_bundle`; ``ValueError`` for an unknown suite, bad length or bad order."""
    keys: dict[Suite, bytes] = {}
    offset = 0
    previous = 0
    while offset < len(bundle):
        try:
            suite = Suite(bundle[offset])
        except ValueError:
            raise ValueError(f"key bundle: unknown suite 0x{bundle[offset]:02x} at byte {offset}") from None
        if suite <= previous:
            raise ValueError("key bundle: suites must appear once each, in ascending order")
        end = offset + 1 + suite.public_key_length
        if end > len(bundle):
            raise ValueError(f"key bundle: the {suite.label} key is truncated")
        keys[suite] = bundle[offset + 1 : end]
        previous, offset = suite, end
    if not keys:
        raise ValueError("key bundle is empty")
    return keys


def suite_mask(suites: Iterable[int]) -> int:
    """The mask ``sum(1 << suite)`` of some suites, as the registry's ``hpkeSuites`` returns it."""
    return sum(Suite(s).mask for s in set(suites))

"""The enclave's two keys: a secp256k1 signing key and an X25519 HPKE key, generated inside and sealed.

At first start both are generated from the enclave's randomness and sealed to ``data_dir/keys.sealed``
(mode 0600); every later start unseals the same keys, so the signer address and the HPKE public key that
were attested and registered stay valid across restarts. Key bytes never leave this module except the
HPKE private key object, which the executor uses to open encrypted inputs. :func:`open_sealer` picks the
sealer a config names (``simulated`` or ``dstack``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from coincurve import PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from coprocessor.attestation.base import TeeLocations
from coprocessor.attestation.dstack import DstackAgent
from coprocessor.sealing import (
    DstackSealer,
    Sealer,
    SealingError,
    SimulatedSealer,
    ensure_private_dir,
    is_private,
    write_new_private_file,
)
from verifier.envelope import generate_key, key_id
from verifier.signing import address_of_private_key, sign_digest

log = logging.getLogger(__name__)

KEYS_FILE = "keys.sealed"
KEYS_PURPOSE = b"teebridge/v1/enclave-keys"
SIGNING_KEY_LENGTH = 32
HPKE_KEY_LENGTH = 32


class EnclaveKeys:
    """The enclave's signing key and HPKE key. ``repr`` and ``str`` show only public values."""

    __slots__ = ("_hpke_private_key", "_signing_key", "hpke_public_key", "signer_address")

    def __init__(self, signing_key: bytes, hpke_private_key: X25519PrivateKey) -> None:
        if len(signing_key) != SIGNING_KEY_LENGTH:
            raise ValueError("a secp256k1 signing key is 32 bytes")
        self._signing_key = signing_key
        self._hpke_private_key = hpke_private_key
        self.signer_address: str = address_of_private_key(signing_key)
        """Checksummed Ethereum address of the signing key."""
        self.hpke_public_key: bytes = hpke_private_key.public_key().public_bytes_raw()
        """The 32 raw bytes of the X25519 public key requesters encrypt inputs to."""

    @classmethod
    def generate(cls) -> EnclaveKeys:
        """Fresh keys from the OS randomness (inside the enclave)."""
        while True:
            candidate = os.urandom(SIGNING_KEY_LENGTH)
            try:
                PrivateKey(candidate)  # rejects 0 and values >= the curve order
            except ValueError:
                continue
            return cls(candidate, generate_key())

    @property
    def hpke_key_id(self) -> bytes:
        """``keccak256(hpkePublicKey)[0:8]``, the id encrypted envelopes name."""
        return key_id(self.hpke_public_key)

    @property
    def hpke_private_key(self) -> X25519PrivateKey:
        """The HPKE private key. Only the executor uses it, to open encrypted inputs."""
        return self._hpke_private_key

    def sign(self, digest: bytes) -> bytes:
        """A 65-byte ``r || s || v`` low-s signature over a 32-byte digest."""
        return sign_digest(self._signing_key, digest)

    def to_bytes(self) -> bytes:
        """The 64-byte secret serialisation that is sealed: ``signingKey || hpkePrivateKey``."""
        return self._signing_key + self._hpke_private_key.private_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> EnclaveKeys:
        """Inverse of :meth:`to_bytes`."""
        if len(data) != SIGNING_KEY_LENGTH + HPKE_KEY_LENGTH:
            raise ValueError("sealed key material has the wrong length")
        hpke = X25519PrivateKey.from_private_bytes(data[SIGNING_KEY_LENGTH:])
        return cls(data[:SIGNING_KEY_LENGTH], hpke)

    def __repr__(self) -> str:
        return f"EnclaveKeys(signer={self.signer_address}, hpke_key_id=0x{self.hpke_key_id.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("EnclaveKeys cannot be pickled: key material stays in the enclave")


def open_sealer(sealing: str, data_dir: Path, *, dstack_socket: Path | None = None) -> Sealer:
    """The sealer for ``data_dir`` that the ``sealing`` setting names.

    ``simulated``: :class:`SimulatedSealer` over ``data_dir/seal-root.key`` (created only while there are no
    sealed keys yet). ``dstack``: :class:`DstackSealer` with its root from the guest agent's ``GetKey`` on
    ``dstack_socket``, or on the first standard socket path that exists when it is None. Raises
    ``SealingError`` when the root cannot be had, ``ValueError`` for another name.
    """
    if sealing == "simulated":
        return SimulatedSealer.open(data_dir, create=not (data_dir / KEYS_FILE).exists())
    if sealing == "dstack":
        where = TeeLocations() if dstack_socket is None else TeeLocations(dstack_sockets=(dstack_socket,))
        socket = where.dstack_socket()
        if socket is None:
            raise SealingError(
                "sealing 'dstack' needs the dstack guest agent, but no socket exists at "
                + ", ".join(str(p) for p in where.dstack_sockets)
            )
        return DstackSealer.from_kms(DstackAgent(socket).get_key)
    raise ValueError(f"unknown sealing {sealing!r}; known: simulated, dstack")


def load_or_create_keys(data_dir: Path, sealer: Sealer | None = None) -> EnclaveKeys:
    """Unseal ``data_dir/keys.sealed``, or on first start generate keys and seal them there.

    ``sealer`` defaults to :class:`SimulatedSealer` over ``data_dir``. Raises ``SealingError`` naming the
    file if it exists but does not unseal (tampered, truncated or sealed under another root).
    """
    path = data_dir / KEYS_FILE
    if sealer is None:
        sealer = SimulatedSealer.open(data_dir, create=not path.exists())
    ensure_private_dir(data_dir)
    if not path.exists():
        keys = EnclaveKeys.generate()
        if write_new_private_file(path, sealer.seal(keys.to_bytes(), KEYS_PURPOSE)):
            log.info("generated new enclave keys: signer %s, sealed to %s", keys.signer_address, path)
            return keys
        # Another process created the file first: fall through and use its keys.
    keys = _unseal(path, sealer)
    log.info("unsealed enclave keys: signer %s from %s", keys.signer_address, path)
    return keys


def _unseal(path: Path, sealer: Sealer) -> EnclaveKeys:
    if not is_private(path):
        log.warning("%s is readable by group or others; it should be mode 0600", path)
    try:
        return EnclaveKeys.from_bytes(sealer.unseal(path.read_bytes(), KEYS_PURPOSE))
    except SealingError as exc:
        raise SealingError(f"cannot unseal {path}: {exc}") from exc
    except ValueError as exc:
        raise SealingError(f"cannot unseal {path}: {exc}") from exc

"""Sealing: encrypting enclave secrets so only this enclave (here: this data directory) can read them.

Simulated sealing, used when there is no TEE sealing key: a 32-byte root secret is kept in
``data_dir/seal-root.key`` (mode 0600, created on first start) and the sealing key is
``HKDF-SHA256(root, salt=None, info="teebridge/v1/seal")``. A sealed blob is::

    version (1 byte, 0x01) || nonce (12 bytes) || AES-256-GCM(ciphertext || tag(16))

with the caller's ``purpose`` label as the associated data, so a blob sealed for one purpose does not
unseal as another. This protects against a copied data file on another machine only as far as the root
file is kept apart from it; a real TEE provider derives the key from the enclave's identity instead.

dstack sealing (:class:`DstackSealer`, ``sealing = "dstack"``) uses the same key derivation and blob format
with the root taken from the dstack KMS instead of a file: the 32-byte key the guest agent's ``GetKey``
returns for the path :data:`DSTACK_SEAL_KEY_PATH`. The KMS derives it from the app's key and the path, so
every start of the same dstack app gets the same root, and none of it is stored on disk.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEAL_VERSION = 0x01
SEAL_INFO = b"teebridge/v1/seal"
NONCE_LENGTH = 12
TAG_LENGTH = 16
ROOT_KEY_LENGTH = 32
ROOT_KEY_FILE = "seal-root.key"
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
DSTACK_SEAL_KEY_PATH = "teebridge/v1/seal"
"""The dstack ``GetKey`` path of the sealing root. Changing it makes existing ``keys.sealed`` files unreadable."""


class SealingError(Exception):
    """Sealed data that cannot be unsealed, or a sealing root that is missing or malformed."""


class Sealer(Protocol):
    """Encrypts secrets to this enclave. ``purpose`` is authenticated and must match on unseal."""

    def seal(self, plaintext: bytes, purpose: bytes) -> bytes:
        """Return the sealed form of ``plaintext``."""
        ...

    def unseal(self, sealed: bytes, purpose: bytes) -> bytes:
        """Return the plaintext of ``sealed``; raise ``SealingError`` if it does not authenticate."""
        ...


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing; a newly created leaf directory gets mode 0700."""
    if not path.exists():
        path.mkdir(parents=True, mode=PRIVATE_DIR_MODE)


def write_new_private_file(path: Path, data: bytes) -> bool:
    """Atomically create ``path`` with mode 0600 holding ``data``; return False if it already exists.

    The bytes are written to a temporary file first and hard-linked into place, so a concurrent reader
    never sees a partial file and two processes racing on first start agree on one winner.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return True


def is_private(path: Path) -> bool:
    """Whether neither group nor others have any permission on ``path``."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


class _RootSealer:
    """AES-256-GCM sealing under ``HKDF-SHA256(root, info=SEAL_INFO)`` (see the module docstring)."""

    __slots__ = ("_aead", "_root_name")

    def __init__(self, root_name: str, root_secret: bytes) -> None:
        if len(root_secret) != ROOT_KEY_LENGTH:
            raise SealingError(f"{root_name}: a sealing root is {ROOT_KEY_LENGTH} bytes, found {len(root_secret)}")
        self._root_name = root_name
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_INFO).derive(root_secret)
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, purpose: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext``; ``purpose`` is bound as associated data."""
        nonce = os.urandom(NONCE_LENGTH)
        return bytes([SEAL_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, _aad(purpose))

    def unseal(self, sealed: bytes, purpose: bytes) -> bytes:
        """Decrypt ``sealed``; raise ``SealingError`` on a wrong version, truncation or any tampering."""
        if len(sealed) < 1 + NONCE_LENGTH + TAG_LENGTH:
            raise SealingError("sealed data is truncated")
        if sealed[0] != SEAL_VERSION:
            raise SealingError(f"unknown sealing version 0x{sealed[0]:02x} (this build reads 0x{SEAL_VERSION:02x})")
        nonce, body = sealed[1 : 1 + NONCE_LENGTH], sealed[1 + NONCE_LENGTH :]
        try:
            return self._aead.decrypt(nonce, body, _aad(purpose))
        except InvalidTag as exc:
            raise SealingError(
                "sealed data failed authentication: it was modified, or sealed under another root than "
                f"{self._root_name}"
            ) from exc


class SimulatedSealer(_RootSealer):
    """AES-256-GCM sealing under a key derived from a root secret file (see the module docstring)."""

    __slots__ = ("root_path",)

    def __init__(self, root_path: Path, root_secret: bytes) -> None:
        super().__init__(str(root_path), root_secret)
        self.root_path = root_path

    @classmethod
    def open(cls, data_dir: Path, *, create: bool = True) -> SimulatedSealer:
        """Load ``data_dir/seal-root.key``, creating it (32 random bytes, mode 0600) if allowed and absent."""
        ensure_private_dir(data_dir)
        path = data_dir / ROOT_KEY_FILE
        if not path.exists():
            if not create:
                raise SealingError(f"{path} is missing: sealed data in {data_dir} cannot be unsealed without it")
            write_new_private_file(path, os.urandom(ROOT_KEY_LENGTH))
        return cls(path, path.read_bytes())

    def __repr__(self) -> str:
        return f"SimulatedSealer(root_path={str(self.root_path)!r})"


class DstackSealer(_RootSealer):
    """AES-256-GCM sealing under a key derived from a dstack KMS key (see the module docstring)."""

    __slots__ = ("key_path",)

    def __init__(self, root_secret: bytes, key_path: str = DSTACK_SEAL_KEY_PATH) -> None:
        super().__init__(f"the dstack KMS key at path {key_path!r}", root_secret)
        self.key_path = key_path

    @classmethod
    def from_kms(cls, get_key: Callable[[str], bytes], key_path: str = DSTACK_SEAL_KEY_PATH) -> DstackSealer:
        """Get the root from ``get_key(key_path)`` (the guest agent's ``GetKey``); a failure is a ``SealingError``."""
        try:
            root = get_key(key_path)
        except Exception as exc:
            raise SealingError(f"cannot get the sealing root from the dstack KMS (path {key_path!r}): {exc}") from exc
        return cls(root, key_path)

    def __repr__(self) -> str:
        return f"DstackSealer(key_path={self.key_path!r})"


def _aad(purpose: bytes) -> bytes:
    return bytes([SEAL_VERSION]) + purpose

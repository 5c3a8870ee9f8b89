"""HPKE evidence chain: RFC 9180 vectors -> an independent implementation (pyhpke) -> ours, both directions,
and the post-quantum suite against an independent X-Wing KEM (xwing-kem) with pyhpke's key schedule.

Vectors: ../shared/testdata/hpke/rfc9180-test-vectors-x25519-sha256.json (see PROVENANCE.md).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import xwing_kem
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey
from pyhpke.kdf import KDF

from verifier.suites import HpkeKeyPair, Suite, seal

VECTORS = Path(__file__).resolve().parents[2] / "shared/testdata/hpke/rfc9180-test-vectors-x25519-sha256.json"
CHACHA = 3
BASE_MODE = 0
XWING_KEM_ID = 0x647A
INFO = b"teebridge interop"


def vectors() -> list[dict]:
    return [v for v in json.loads(VECTORS.read_text()) if v["aead_id"] == CHACHA]


def pyhpke_suite() -> CipherSuite:
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: f"mode{v['mode']}")
def test_pyhpke_reproduces_the_rfc9180_vectors_of_our_suite(vector: dict) -> None:
    """DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305: all four modes, all 257 encryptions."""
    suite = pyhpke_suite()
    h = bytes.fromhex
    recipient = suite.kem.derive_key_pair(h(vector["ikmR"]))
    ephemeral = suite.kem.derive_key_pair(h(vector["ikmE"]))
    assert recipient.public_key.to_public_bytes() == h(vector["pkRm"])
    assert ephemeral.public_key.to_public_bytes() == h(vector["pkEm"])
    sender_key = suite.kem.derive_key_pair(h(vector["ikmS"])) if "ikmS" in vector else None
    psk = {"psk": h(vector["psk"]), "psk_id": h(vector["psk_id"])} if "psk" in vector else {}
    enc, sender = suite.create_sender_context(
        recipient.public_key,
        info=h(vector["info"]),
        sks=sender_key.private_key if sender_key else None,
        eks=ephemeral,
        **psk,
    )
    assert enc == h(vector["enc"])
    receiver = suite.create_recipient_context(
        enc,
        recipient.private_key,
        info=h(vector["info"]),
        pks=sender_key.public_key if sender_key else None,
        **psk,
    )
    assert len(vector["encryptions"]) == 257
    for item in vector["encryptions"]:
        assert sender.seal(h(item["pt"]), aad=h(item["aad"])) == h(item["ct"])
        assert receiver.open(h(item["ct"]), aad=h(item["aad"])) == h(item["pt"])
    for item in vector["exports"]:
        assert receiver.export(h(item["exporter_context"]), item["L"]) == h(item["exported_value"])


def test_our_base_mode_key_derivation_matches_the_rfc_vector() -> None:
    """Our key pair from the vector's skRm has the vector's pkRm, and opens what pyhpke sealed to it."""
    vector = next(v for v in vectors() if v["mode"] == BASE_MODE)
    ours = HpkeKeyPair(Suite.X25519, bytes.fromhex(vector["skRm"]))
    assert ours.public_key == bytes.fromhex(vector["pkRm"])
    suite = pyhpke_suite()
    enc, sender = suite.create_sender_context(KEMKey.from_pyca_cryptography_key(_x25519_public(ours.public_key)), INFO)
    assert ours.open(enc + sender.seal(b"to the RFC key"), INFO) == b"to the RFC key"


def test_what_we_seal_pyhpke_opens() -> None:
    ours = HpkeKeyPair.generate(Suite.X25519)
    sealed = seal(Suite.X25519, ours.public_key, b"sealed by teebridge", INFO)
    suite = pyhpke_suite()
    private = suite.kem.deserialize_private_key(ours.to_bytes())
    receiver = suite.create_recipient_context(sealed[:32], private, info=INFO)
    assert receiver.open(sealed[32:]) == b"sealed by teebridge"


def test_what_pyhpke_seals_we_open_and_tampering_is_caught() -> None:
    ours = HpkeKeyPair.generate(Suite.X25519)
    suite = pyhpke_suite()
    enc, sender = suite.create_sender_context(suite.kem.deserialize_public_key(ours.public_key), info=INFO)
    ciphertext = sender.seal(b"sealed by pyhpke")
    assert ours.open(enc + ciphertext, INFO) == b"sealed by pyhpke"
    from verifier.suites import DecryptionError

    with pytest.raises(DecryptionError):
        ours.open(enc + ciphertext, INFO + b"!")
    flipped = bytearray(ciphertext)
    flipped[0] ^= 1
    with pytest.raises(DecryptionError):
        ours.open(enc + bytes(flipped), INFO)


# ---------------------------------------------------------------- ML-KEM-768 + X25519 (X-Wing)


def xwing_key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 section 5.1 KeySchedule (base mode) for KEM 0x647a, with pyhpke's labelled HKDF."""
    kdf = KDF(KDFId.HKDF_SHA256, b"HPKE" + struct.pack(">HHH", XWING_KEM_ID, 1, CHACHA))
    context = (
        bytes([BASE_MODE])
        + kdf.labeled_extract(b"", b"psk_id_hash", b"")
        + kdf.labeled_extract(b"", b"info_hash", info)
    )
    secret = kdf.labeled_extract(shared_secret, b"secret", b"")
    return kdf.labeled_expand(secret, b"key", context, 32), kdf.labeled_expand(secret, b"base_nonce", context, 12)


def test_what_we_seal_with_the_pq_suite_an_independent_xwing_opens() -> None:
    pair = xwing_kem.generate_keypair()
    ours = HpkeKeyPair(Suite.MLKEM768_X25519, pair.secret_key)  # X-Wing expanded key: ML-KEM seed || X25519
    assert ours.public_key == pair.public_key
    sealed = seal(Suite.MLKEM768_X25519, pair.public_key, b"post-quantum hello", INFO)
    enc, ciphertext = sealed[:1120], sealed[1120:]
    key, nonce = xwing_key_schedule(xwing_kem.decapsulate(enc, pair.secret_key), INFO)
    assert ChaCha20Poly1305(key).decrypt(nonce, ciphertext, b"") == b"post-quantum hello"


def test_what_an_independent_xwing_seals_we_open() -> None:
    ours = HpkeKeyPair.generate(Suite.MLKEM768_X25519)
    shared_secret, enc = xwing_kem.encapsulate(ours.public_key)
    key, nonce = xwing_key_schedule(shared_secret, INFO)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, b"sealed by xwing-kem", b"")
    assert ours.open(enc + ciphertext, INFO) == b"sealed by xwing-kem"


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
def test_round_trip_and_wrong_key_for_every_suite(suite: Suite) -> None:
    from verifier.suites import DecryptionError

    recipient, other = HpkeKeyPair.generate(suite), HpkeKeyPair.generate(suite)
    message = os.urandom(300)
    sealed = seal(suite, recipient.public_key, message, INFO)
    assert len(sealed) == suite.enc_length + len(message) + 16
    assert recipient.open(sealed, INFO) == message
    with pytest.raises(DecryptionError):
        other.open(sealed, INFO)
    restored = HpkeKeyPair(suite, recipient.to_bytes())
    assert restored.public_key == recipient.public_key and restored.open(sealed, INFO) == message


def _x25519_public(raw: bytes):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    return X25519PublicKey.from_public_bytes(raw)

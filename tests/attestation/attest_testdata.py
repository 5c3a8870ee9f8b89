"""Shared test data for the attestation tests: where the sample quotes live, what PROVENANCE.md says about
each, and how to assemble collateral from the raw Intel PCS bodies.

The samples are in the shared test-data folder next to the repository (``../shared/testdata`` from the
repository root, in CI and locally). If it is missing every test that needs it fails with a message
saying where it was looked for: nothing is skipped.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from teebridge.attest import add_arguments, run
from verifier.dcap import Collateral, Reason, collateral_from_pcs, load_collateral
from verifier.quote import Quote, parse_quote

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTDATA = (REPO_ROOT / ".." / "shared" / "testdata").resolve()
ATTESTATION = TESTDATA / "attestation"


def data_path(relative: str) -> Path:
    """Path of a file under ``testdata/attestation``; fails the test clearly if the folder is missing."""
    if not ATTESTATION.is_dir():
        pytest.fail(
            f"attestation test data not found at {ATTESTATION} (expected ../shared/testdata/attestation "
            f"relative to the repository root {REPO_ROOT}); see PROVENANCE.md in that folder",
            pytrace=False,
        )
    path = ATTESTATION / relative
    if not path.is_file():
        pytest.fail(f"attestation test data file missing: {path}", pytrace=False)
    return path


@cache
def read(relative: str) -> bytes:
    """Bytes of a test-data file."""
    return data_path(relative).read_bytes()


def quote_of(relative: str) -> Quote:
    """The parsed sample quote."""
    return parse_quote(read(relative))


def utc(text: str) -> datetime:
    """``"2025-07-19T10:00:34Z"`` or unix seconds as a string -> aware UTC datetime."""
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class QuoteSample:
    """What PROVENANCE.md ("Per-quote field values") says about one sample quote."""

    path: str
    size: int
    sha256: str
    version: int
    tee: str
    body_type: int | None
    qe_svn: int
    pce_svn: int
    signature_data_len: int
    trailing_bytes: int
    qe_isv_svn: int
    qe_mr_signer: str
    fmspc: str
    pck_ca: str
    fields: dict[str, object] = field(default_factory=dict)


SAMPLES: dict[str, QuoteSample] = {
    "dcap-qvl/sgx_v3_quote.bin": QuoteSample(
        path="dcap-qvl/sgx_v3_quote.bin",
        size=4600,
        version=3,
        qe_svn=10,
        pce_svn=15,
        signature_data_len=4164,
        trailing_bytes=0,
        qe_isv_svn=10,
        sha256="f8b81014b6e443609746822194910f5dc1c92c322fa0584298d1e33e505ca3b5",
        tee="sgx",
        body_type=None,
        qe_mr_signer="8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff",
        fmspc="00a067110000",
        pck_ca="processor",
        fields={
            "cpu_svn": "0b0b1a18ffff04" + "00" * 9,
            "attributes": "0500000000000000e700000000000000",
            "mr_enclave": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
            "mr_signer": "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
            "isv_prod_id": 0,
            "isv_svn": 0,
            "report_data": "48656c6c6f2c20776f726c6421" + "00" * 51,
        },
    ),
    "dcap-qvl/tdx_v4_quote.bin": QuoteSample(
        path="dcap-qvl/tdx_v4_quote.bin",
        size=5006,
        version=4,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4300,
        trailing_bytes=70,
        qe_isv_svn=6,
        sha256="c42f9164325024bca2757bc8819b11879a0a369132ea4e2b7c85df4805ea72db",
        tee="tdx",
        body_type=None,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="b0c06f000000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "060103" + "00" * 13,
            "mr_seam": (
                "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1"
            ),
            "td_attributes": "0000001000000000",
            "xfam": "e702060000000000",
            "mr_td": (
                "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": (
                "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0"
            ),
            "rtmr1": (
                "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7aea8c323c173019b3093d54e579e9378"
            ),
            "rtmr2": (
                "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132"
            ),
            "rtmr3": "00" * 48,
            "report_data": (
                "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
                "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
            ),
        },
    ),
    "dcap-qvl/tdx_v5_quote_outdated.bin": QuoteSample(
        path="dcap-qvl/tdx_v5_quote_outdated.bin",
        size=5006,
        version=5,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4300,
        trailing_bytes=0,
        qe_isv_svn=7,
        sha256="4c453ea417a7863ed67c215fe4735d91e26f359c760e5984a277866d8d5758e9",
        tee="tdx",
        body_type=3,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="90c06f000000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "070103" + "00" * 13,
            "mr_seam": (
                "49b66faa451d19ebbdbe89371b8daf2b65aa3984ec90110343e9e2eec116af08850fa20e3b1aa9a874d77a65380ee7e6"
            ),
            "td_attributes": "0000001000000000",
            "xfam": "e718060000000000",
            "mr_td": (
                "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1ae451d382d5a9b1b4c0ed0e5ae9a3dbd"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": "00" * 48,
            "rtmr1": "00" * 48,
            "rtmr2": "00" * 48,
            "rtmr3": "00" * 48,
            "report_data": "d2142b643598eb5fae2bc8529dd79a558b29f868ccbb6531cb28dab9dce47728" + "00" * 32,
            "tee_tcb_svn2": "0d0103" + "00" * 13,
            "mr_service_td": "00" * 48,
        },
    ),
    "dcap-qvl/tdx_v4_quote_tappd.bin": QuoteSample(
        path="dcap-qvl/tdx_v4_quote_tappd.bin",
        size=5006,
        version=4,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4300,
        trailing_bytes=70,
        qe_isv_svn=6,
        sha256="219cafdecd8d89d68da86e1cb81292d46b2fab776a0127a85371354026913ba5",
        tee="tdx",
        body_type=None,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="b0c06f000000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "050102" + "00" * 13,
            "mr_seam": (
                "1cc6a17ab799e9a693fac7536be61c12ee1e0fabada82d0c999e08ccee2aa86de77b0870f558c570e7ffe55d6d47fa04"
            ),
            "td_attributes": "0000001000000000",
            "xfam": "e702060000000000",
            "mr_td": (
                "c68518a0ebb42136c12b2275164f8c72f25fa9a34392228687ed6e9caeb9c0f1dbd895e9cf475121c029dc47e70e91fd"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": (
                "274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f900a1c44d32386fd3c993dc814e62af9d"
            ),
            "rtmr1": (
                "918fbd97108e05450afa6aca140c6363ab913578b66cc312e3e8542ce5ade455a30c8d9e4d53a5e43d81955f76140279"
            ),
            "rtmr2": "00" * 48,
            "rtmr3": (
                "a2d25bc888a93009af5b70eadb410e9071d18387e4db39aae20fe767f5c4279d95e6519c5d797938a90694599c5bea7a"
            ),
            "report_data": (
                "7668c6b4eafb62301c72714ecc7d90ce9a0e04b52dc117720df2047b0a59f1db"
                "d937243eef1410a3cdc524aad66d4554b4f18b54da2fc0608dac40d6dea5f1d4"
            ),
        },
    ),
    "go-tdx-guest/tdx_v4_quote_SPR_E4.dat": QuoteSample(
        path="go-tdx-guest/tdx_v4_quote_SPR_E4.dat",
        size=4974,
        version=4,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4299,
        trailing_bytes=39,
        qe_isv_svn=4,
        sha256="6dde5548bec99147fef832643301f113df99931547be26df8ac376c4eaa5b5a7",
        tee="tdx",
        body_type=None,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="50806f000000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "030004" + "00" * 13,
            "mr_seam": (
                "2fd279c16164a93dd5bf373d834328d46008c2b693af9ebb865b08b2ced320c9a89b4869a9fab60fbe9d0c5a5363c656"
            ),
            "td_attributes": "0000004000000000",
            "xfam": "e71a060000000000",
            "mr_td": (
                "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": (
                "2927da70461cd63266f43230cc1849c03ef25ebe490062a801d8fcc80af42976823adf08f833c1e50b51779c6593f32a"
            ),
            "rtmr1": (
                "2c700b8ba9b85783f8be9fb9443647bdc0bb3c50747f06297cc6538c25a5f589c4b56d035c59107c6bc5800db2cacb61"
            ),
            "rtmr2": (
                "8652f0caaba7e215ea442dc36a4499d8fec3362f3a0b2ca151cbe4b3e6466fe59c7368b3c2287fc7c3bf5c924eb4424e"
            ),
            "rtmr3": "00" * 48,
            "report_data": (
                "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545"
                "eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113"
            ),
        },
    ),
    "go-tdx-guest/tdx_v5_quote_sample.dat": QuoteSample(
        path="go-tdx-guest/tdx_v5_quote_sample.dat",
        size=5006,
        version=5,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4300,
        trailing_bytes=0,
        qe_isv_svn=7,
        sha256="cf77a6e91e48291d5d338c5f3b5d0674225a4d13e7d83ff5e537a4914bf22e1d",
        tee="tdx",
        body_type=3,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="90c06f000000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "0b0104" + "00" * 13,
            "mr_seam": (
                "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d"
            ),
            "td_attributes": "0000001000000000",
            "xfam": "e702060000000000",
            "mr_td": (
                "7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": (
                "5c8daf76063a71ac8fcef4067564661fc682ed7944c7a5d21dbbced02f61ceff4ba0678c6aef3bdae8cbc614cec24619"
            ),
            "rtmr1": (
                "463acaace1b6e97c76e92e41fe312aa66f3fd4dad60ec7acf169859db0343e3d1e591646795cdc80fbc0ca5f7041d253"
            ),
            "rtmr2": (
                "6369b9c9a3b791ebcbdc5a0bb9536cfb57f50df2b393b33c8b29616d3568baa61f4b59dc6092e31ea8764bcbdfc69f20"
            ),
            "rtmr3": "00" * 48,
            "report_data": (
                "945eaacf5abc1f719d8666a942fda03d1edcb4490277396093dc5a5289ab9f1e"
                "094aed63060cd4a4933a4dd537ed1255c9c79ecb3ed82cd1b486233e31c25c3a"
            ),
            "tee_tcb_svn2": "0d0104" + "00" * 13,
            "mr_service_td": "00" * 48,
        },
    ),
    "automata/sgx_v3_quote.bin": QuoteSample(
        path="automata/sgx_v3_quote.bin",
        size=4734,
        version=3,
        qe_svn=9,
        pce_svn=14,
        signature_data_len=4298,
        trailing_bytes=0,
        qe_isv_svn=9,
        sha256="c81a90ee23bbc132b4073fe78ad2a58bac8a538a56e4b97b4557216353a0e511",
        tee="sgx",
        body_type=None,
        qe_mr_signer="8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff",
        fmspc="00606a000000",
        pck_ca="platform",
        fields={
            "cpu_svn": "0e0e100fffff01" + "00" * 9,
            "attributes": "0500000000000000e700000000000000",
            "mr_enclave": "a4f45c39dac622cb1dd32ddb35a52ec92db41d0fa88a1c911c49e59c534f61cd",
            "mr_signer": "8f2dbc0f9c5d3378d596974b2deed1f93223cc49242899f83809bcc92546132c",
            "isv_prod_id": 0,
            "isv_svn": 0,
            "report_data": "00" * 64,
        },
    ),
    "automata/tdx_v4_quote.bin": QuoteSample(
        path="automata/tdx_v4_quote.bin",
        size=8000,
        version=4,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4299,
        trailing_bytes=3065,
        qe_isv_svn=6,
        sha256="d7dbcb124e9a734b2dc5bf32c731cd80597c5ca20602e697a6a10c3d17b30009",
        tee="tdx",
        body_type=None,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="00806f050000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "040107" + "00" * 13,
            "mr_seam": (
                "ffc97a88587660fb04e1f7c851300c96ae0b5a463ac46d035d16c2d9f36d0ed1d23775bcbd27deb219e3a3cc28023895"
            ),
            "td_attributes": "0000001000000000",
            "xfam": "e700060000000000",
            "mr_td": (
                "935be7742dd89c6a4df6dba8353d89041ae0f052beef993b1e7f4524d3bc57650df20e5582158352e1240b3f1fed55d8"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": "00" * 48,
            "rtmr1": "00" * 48,
            "rtmr2": "00" * 48,
            "rtmr3": "00" * 48,
            "report_data": "00" * 64,
        },
    ),
    "automata/tdx_v5_quote.dat": QuoteSample(
        path="automata/tdx_v5_quote.dat",
        size=5006,
        version=5,
        qe_svn=0,
        pce_svn=0,
        signature_data_len=4300,
        trailing_bytes=0,
        qe_isv_svn=6,
        sha256="d0010db6f7b8135f8172993d4300712cf5966a132809910b2c3e80107a678737",
        tee="tdx",
        body_type=3,
        qe_mr_signer="dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
        fmspc="90c06f000000",
        pck_ca="platform",
        fields={
            "tee_tcb_svn": "050102" + "00" * 13,
            "mr_seam": (
                "1cc6a17ab799e9a693fac7536be61c12ee1e0fabada82d0c999e08ccee2aa86de77b0870f558c570e7ffe55d6d47fa04"
            ),
            "td_attributes": "0000001000000000",
            "xfam": "e742060000000000",
            "mr_td": (
                "157768a71a6a31f5561978c4cde665809d22976ef5dead2952839b7b3ea23b6c2931c9148fe1d117c99faefac18bb73b"
            ),
            "mr_config_id": "00" * 48,
            "rtmr0": (
                "cdf337cef3d59099c809ca0dd38c7ba70d026b8680726e394268ad97c9d620bbd805b3148bf10034a4d205f3fd1d6723"
            ),
            "rtmr1": (
                "149796dc1c439aca2250b2c731722ffb220504cf0b38eeda05e675aae0dfb536fb9c73c64cd3bd98aae4b2e876541a15"
            ),
            "rtmr2": (
                "f5902739f8e3f2adef35391d7a3c8237da62ab25c75857953d547ad249270d76c1be21bf6a8aec2a22852e972c537c7f"
            ),
            "rtmr3": "00" * 48,
            "report_data": (
                "83ded8a0ee745596dbd961624da760cf1c8b0e48364959396c5c76ff96be4c1a"
                "9c24ba8b980f2173e883d5352a360546c1138ef75ce730c843a6c7da6413f400"
            ),
            "tee_tcb_svn2": "050102" + "00" * 13,
            "mr_service_td": (
                "383c87d3bbb047b2d171eaca95312ede99f258088dc788f6ae2ccf8b6dd848fe8d47629e08b3f6cbd4a00dd47a5a033d"
            ),
        },
    ),
}

#: Hex-text copies of sample quotes, and the binary file each must decode to.
HEX_COPIES = {
    "dcap-qvl/tdx_v4_quote_tappd.hex": "dcap-qvl/tdx_v4_quote_tappd.bin",
    "automata/sgx_v3_quote.hex": "automata/sgx_v3_quote.bin",
}


# ------------------------------------------------------------------------------------------- collateral


def dcap_qvl_collateral(quote_name: str) -> Collateral:
    """The recorded dcap-qvl collateral for ``dcap-qvl/<quote_name>.bin``."""
    return load_collateral(data_path(f"dcap-qvl/{quote_name}_collateral.json"))


def pem(certificates: list[x509.Certificate]) -> str:
    """Concatenated PEM of ``certificates``."""
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def tcb_signing_chain_2025() -> str:
    """Intel SGX TCB Signing certificate (2025 reissue) + root, as PEM."""
    signing = x509.load_der_x509_certificate(read("automata/tcb_signing_cert.der"))
    root = x509.load_pem_x509_certificate(read("intel_sgx_root_ca.pem"))
    return pem([signing, root])


def pcs_collateral(
    quote: str, *, pck_crl: str, root_ca_crl: str, tcb_info: str, qe_identity: str, chain: str
) -> Collateral:
    """Collateral assembled from raw PCS bodies; the PCK CRL issuer chain is the quote's own CA + root."""
    parsed = quote_of(quote)
    return collateral_from_pcs(
        pck_crl=read(pck_crl),
        pck_crl_issuer_chain=pem(parsed.pck_certificates()[1:]),
        root_ca_crl=read(root_ca_crl),
        tcb_info_body=read(tcb_info).decode(),
        tcb_info_issuer_chain=chain,
        qe_identity_body=read(qe_identity).decode(),
        qe_identity_issuer_chain=chain,
    )


def automata_sgx_collateral() -> Collateral:
    """Automata's 2025-08 SGX collateral for ``automata/sgx_v3_quote.bin``."""
    return pcs_collateral(
        "automata/sgx_v3_quote.bin",
        pck_crl="automata/pck_platform_crl_2025-08.der",
        root_ca_crl="automata/root_ca_crl.der",
        tcb_info="automata/sgx_tcbinfo_v3_fmspc_00606a000000_2025-08.json",
        qe_identity="automata/sgx_qe_identity_2025-08.json",
        chain=tcb_signing_chain_2025(),
    )


def automata_tdx_v4_collateral() -> Collateral:
    """Automata's 2025-06 TDX collateral for ``automata/tdx_v4_quote.bin``."""
    return pcs_collateral(
        "automata/tdx_v4_quote.bin",
        pck_crl="automata/pck_platform_crl_2025-06.der",
        root_ca_crl="automata/root_ca_crl.der",
        tcb_info="automata/tdx_tcbinfo_v3_fmspc_00806f050000_2025-06.json",
        qe_identity="automata/tdx_qe_identity_2025-06.json",
        chain=tcb_signing_chain_2025(),
    )


def automata_tdx_v5_collateral() -> Collateral:
    """Automata's 2025-06 TDX collateral (FMSPC 90c06f000000) for ``automata/tdx_v5_quote.dat``."""
    return pcs_collateral(
        "automata/tdx_v5_quote.dat",
        pck_crl="automata/pck_platform_crl_2025-06.der",
        root_ca_crl="automata/root_ca_crl.der",
        tcb_info="automata/tdx_tcbinfo_v3_fmspc_90c06f000000_2025-06.json",
        qe_identity="automata/tdx_qe_identity_2025-06.json",
        chain=tcb_signing_chain_2025(),
    )


def go_spr_collateral() -> Collateral:
    """go-tdx-guest's 2023 collateral for ``go-tdx-guest/tdx_v4_quote_SPR_E4.dat`` (old TCB signing chain)."""
    return pcs_collateral(
        "go-tdx-guest/tdx_v4_quote_SPR_E4.dat",
        pck_crl="go-tdx-guest/pck_platform_crl.der",
        root_ca_crl="go-tdx-guest/root_ca_crl.der",
        tcb_info="go-tdx-guest/tdx_tcbinfo_fmspc_50806f000000.json",
        qe_identity="go-tdx-guest/tdx_qe_identity.json",
        chain=read("go-tdx-guest/tcb_signing_chain.pem").decode(),
    )


def go_v5_collateral() -> Collateral:
    """go-tdx-guest's 2026 TCB info with its 2023 QE identity (not time-consistent, per PROVENANCE.md)."""
    return pcs_collateral(
        "go-tdx-guest/tdx_v5_quote_sample.dat",
        pck_crl="go-tdx-guest/pck_platform_crl.der",
        root_ca_crl="automata/root_ca_crl.der",
        tcb_info="go-tdx-guest/tdx_tcbinfo_fmspc_90c06f000000.json",
        qe_identity="go-tdx-guest/tdx_qe_identity.json",
        chain=tcb_signing_chain_2025(),
    )


COLLATERALS = {
    "dcap-qvl/sgx_v3_quote.bin": lambda: dcap_qvl_collateral("sgx_v3_quote"),
    "dcap-qvl/tdx_v4_quote.bin": lambda: dcap_qvl_collateral("tdx_v4_quote"),
    "dcap-qvl/tdx_v5_quote_outdated.bin": lambda: dcap_qvl_collateral("tdx_v5_quote_outdated"),
    # tappd has no collateral of its own; the TDX v4 sample's has the same FMSPC and CA.
    "dcap-qvl/tdx_v4_quote_tappd.bin": lambda: dcap_qvl_collateral("tdx_v4_quote"),
    "automata/sgx_v3_quote.bin": automata_sgx_collateral,
    "automata/tdx_v4_quote.bin": automata_tdx_v4_collateral,
    "automata/tdx_v5_quote.dat": automata_tdx_v5_collateral,
    "go-tdx-guest/tdx_v4_quote_SPR_E4.dat": go_spr_collateral,
    "go-tdx-guest/tdx_v5_quote_sample.dat": go_v5_collateral,
}


# -------------------------------------------------------------------------------------- expected verdicts


@dataclass(frozen=True)
class VerifyCase:
    """One expected verification outcome. ``basis`` says who asserts it (see PROVENANCE.md)."""

    quote: str
    at: str
    accepted: bool
    basis: str
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    reason: Reason | None = None

    @property
    def id(self) -> str:
        return f"{self.quote}@{self.at}"


VERIFY_CASES = (
    VerifyCase(
        "dcap-qvl/sgx_v3_quote.bin",
        "1752919277",
        True,
        "asserted by source (dcap-qvl could_parse_sgx_quote)",
        "ConfigurationAndSWHardeningNeeded",
        ("INTEL-SA-00289", "INTEL-SA-00615"),
    ),
    VerifyCase(
        "dcap-qvl/tdx_v4_quote.bin", "1752919234", True, "asserted by source (could_parse_tdx_quote)", "UpToDate"
    ),
    VerifyCase(
        "dcap-qvl/tdx_v5_quote_outdated.bin",
        "1774003274",
        False,
        "derived (PROVENANCE): no TCB level matches without the source's override",
        reason=Reason.TCB_LEVEL_NOT_FOUND,
    ),
    VerifyCase(
        "dcap-qvl/tdx_v4_quote_tappd.bin",
        "1752919234",
        False,
        "ours: signatures and chain pass, then no TCB level of the v4 sample's TCB info matches",
        reason=Reason.TCB_LEVEL_NOT_FOUND,
    ),
    VerifyCase(
        "automata/sgx_v3_quote.bin",
        "2025-08-15T05:45:00Z",
        True,
        "success asserted by source (Automata on-chain test); status derived",
        "SWHardeningNeeded",
        ("INTEL-SA-00615",),
    ),
    VerifyCase(
        "automata/tdx_v4_quote.bin",
        "2025-06-05T03:45:00Z",
        True,
        "success asserted by source (Automata on-chain test); OutOfDate asserted with later collateral",
        "OutOfDate",
        ("INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"),
    ),
    VerifyCase(
        "automata/tdx_v5_quote.dat",
        "2025-06-15T00:00:00Z",
        False,
        "dcap-qvl refuses a non-zero MR_SERVICETD (Automata's own Rust verifier needs allow_service_td)",
        reason=Reason.SERVICE_TD_UNSUPPORTED,
    ),
    VerifyCase(
        "automata/tdx_v5_quote.dat",
        "2025-06-14T00:00:00Z",
        False,
        "derived (PROVENANCE): the PCK leaf is valid only from 2025-06-14T16:04:26Z",
        reason=Reason.CERT_NOT_YET_VALID,
    ),
    VerifyCase(
        "go-tdx-guest/tdx_v4_quote_SPR_E4.dat",
        "2023-07-01T01:00:00Z",
        False,
        "source: signatures, chain and collateral verify, TCB status evaluation fails; derived: no level matches",
        reason=Reason.TCB_LEVEL_NOT_FOUND,
    ),
    VerifyCase(
        "go-tdx-guest/tdx_v4_quote_SPR_E4.dat",
        "2053-07-01T01:00:00Z",
        False,
        "asserted by source: tcbInfo has expired",
        reason=Reason.COLLATERAL_EXPIRED,
    ),
    VerifyCase(
        "go-tdx-guest/tdx_v5_quote_sample.dat",
        "2026-02-03T01:00:00Z",
        False,
        "PROVENANCE: the 2023 QE identity is not time-consistent with the 2026 TCB info",
        reason=Reason.COLLATERAL_EXPIRED,
    ),
)


# ------------------------------------------------------------------------------------------ command line


def cli(*argv: str | Path) -> tuple[int, str, str]:
    """What `teebridge attest ...` does once wired into teebridge.cli: add_arguments + run."""
    parser = argparse.ArgumentParser(prog="teebridge")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["attest", *map(str, argv)])
    out, err = io.StringIO(), io.StringIO()
    code = run(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def cli_json(*argv: str | Path) -> tuple[int, dict]:
    """``cli(..., "--json")`` with the output parsed."""
    code, out, _ = cli(*argv, "--json")
    return code, json.loads(out)

"""The pinned Intel SGX Root CA: the only trust anchor for DCAP quote verification.

Every PCK certificate chain, TCB-info and QE-identity signing chain and CRL must chain to this
certificate. It is embedded here (not fetched, not taken from a quote or a PCCS) and its SHA-256 is
checked when the module is imported, so an edit to the PEM fails loudly instead of silently moving trust.

Copied from google/go-tdx-guest ``verify/trusted_root.pem`` (byte-identical to Phala-Network/dcap-qvl
``src/TrustedRootCA.der``). Self-signed ECDSA P-256, valid 2018-05-21T10:45:10Z to 2049-12-31T23:59:59Z.
"""

from __future__ import annotations

import base64
import hashlib

#: SHA-256 of the DER encoding of the Intel SGX Root CA certificate.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

INTEL_SGX_ROOT_CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""


def _pem_to_der(pem: str) -> bytes:
    lines = [line.strip() for line in pem.strip().splitlines()]
    if lines[0] != "-----BEGIN CERTIFICATE-----" or lines[-1] != "-----END CERTIFICATE-----":
        raise RuntimeError("pinned Intel SGX Root CA is not a single PEM certificate")
    return base64.b64decode("".join(lines[1:-1]), validate=True)


def _load() -> bytes:
    der = _pem_to_der(INTEL_SGX_ROOT_CA_PEM)
    digest = hashlib.sha256(der).hexdigest()
    if digest != INTEL_SGX_ROOT_CA_SHA256:
        raise RuntimeError(f"pinned Intel SGX Root CA has SHA-256 {digest}, expected {INTEL_SGX_ROOT_CA_SHA256}")
    return der


#: DER bytes of the Intel SGX Root CA (checked against :data:`INTEL_SGX_ROOT_CA_SHA256` at import).
INTEL_SGX_ROOT_CA_DER: bytes = _load()

"""Hardware quote providers on fake TEE file trees: configfs-tsm (TDX), Gramine (SGX), and provider selection.

The fakes play the kernel's (or Gramine's) side of the file protocol on a plain directory. They subclass
``FileIO``, do the real file operation first and then what the real pseudo-filesystem would do, so the
provider code under test runs exactly as in production: mkdir, read, write, rmdir on real files.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coprocessor.attestation import (
    PROVIDERS,
    AttestationUnavailableError,
    MeasurementNotWiredError,
    QuoteError,
    QuoteProvider,
    TeeLocations,
    create_provider,
    detect_provider,
    measure_not_wired,
)
from coprocessor.attestation.base import FileIO
from coprocessor.attestation.sgx_gramine import SgxGramineQuoteProvider
from coprocessor.attestation.tdx_configfs import TdxConfigfsQuoteProvider
from coprocessor.config import CoprocessorConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT.parent / "shared" / "testdata" / "attestation" / "dcap-qvl"
CODE_MEASUREMENT = bytes(range(32))
ZEROS = bytes(64)
REPORT_DATA = bytes(range(1, 65))


def sample(name: str) -> bytes:
    """A quote from the shared test data (``../shared/testdata`` next to the repository)."""
    path = SAMPLES / name
    if not path.is_file():
        pytest.fail(f"test data {path} is missing (expected ../shared/testdata next to the repository)")
    return path.read_bytes()


TDX_QUOTE = sample("tdx_v4_quote.bin")
SGX_QUOTE = sample("sgx_v3_quote.bin")


class RecordingMeasure:
    """A stand-in for the DCAP parser's measurement function: SHA-256 of the quote, recording its inputs."""

    def __init__(self) -> None:
        self.quotes: list[bytes] = []

    def __call__(self, quote: bytes) -> bytes:
        self.quotes.append(quote)
        return hashlib.sha256(b"measure:" + quote).digest()


def measured(quote: bytes) -> bytes:
    return hashlib.sha256(b"measure:" + quote).digest()


class FakeTsmKernel(FileIO):
    """The kernel side of ``/sys/kernel/config/tsm/report`` on a plain directory.

    mkdir fills the new entry with its attributes; a write to ``inblob`` bumps ``generation`` and puts the
    quote in ``outblob``; rmdir removes the attributes with the entry. ``racers`` extra bumps (another
    process writing the same entry) are added to the next ``races`` inblob writes.
    """

    def __init__(self, root: Path, outblob: bytes = TDX_QUOTE, provider: str = "tdx_guest") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.outblob = outblob
        self.provider = provider
        self.races = 0
        self.racers = 1
        self.fail_inblob: OSError | None = None
        self.ops: list[tuple[str, str]] = []
        self.inblobs: list[bytes] = []
        self.entries: list[str] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.ops.append(("mkdir", path.name))
        self.entries.append(path.name)
        (path / "generation").write_text("0\n")
        (path / "provider").write_text(self.provider + "\n")
        (path / "inblob").write_bytes(b"")
        (path / "outblob").write_bytes(b"")

    def write(self, path: Path, data: bytes) -> None:
        self.ops.append(("write", path.name))
        if path.name == "inblob" and self.fail_inblob is not None:
            raise self.fail_inblob
        super().write(path, data)
        if path.name == "inblob":
            entry = path.parent
            written = path.read_bytes()
            assert len(written) == 64, "inblob takes the 64 bytes of report data"
            self.inblobs.append(written)
            bump = 1
            if self.races:
                self.races -= 1
                bump += self.racers
            generation = int((entry / "generation").read_text()) + bump
            (entry / "generation").write_text(f"{generation}\n")
            (entry / "outblob").write_bytes(self.outblob)

    def read(self, path: Path) -> bytes:
        self.ops.append(("read", path.name))
        return super().read(path)

    def rmdir(self, path: Path) -> None:
        self.ops.append(("rmdir", path.name))
        for attribute in path.iterdir():
            attribute.unlink()
        super().rmdir(path)


@pytest.fixture
def kernel(tmp_path: Path) -> FakeTsmKernel:
    return FakeTsmKernel(tmp_path / "tsm" / "report")


def tdx(kernel: FakeTsmKernel, measure: Callable[[bytes], bytes] = measured) -> TdxConfigfsQuoteProvider:
    return TdxConfigfsQuoteProvider(kernel.root, measure, io=kernel)


ONE_REPORT = [
    ("mkdir", "entry"),
    ("read", "generation"),
    ("write", "inblob"),
    ("read", "outblob"),
    ("read", "generation"),
    ("read", "provider"),
    ("rmdir", "entry"),
]


def normalised(ops: list[tuple[str, str]], entries: list[str]) -> list[tuple[str, str]]:
    return [(op, "entry" if name in entries else name) for op, name in ops]


def test_tdx_quote_follows_the_configfs_protocol(kernel: FakeTsmKernel) -> None:
    measure = RecordingMeasure()
    provider = tdx(kernel, measure)
    assert isinstance(provider, QuoteProvider)
    assert (provider.kind, provider.insecure, provider.warning) == ("tdx", False, None)
    assert measure.quotes == [TDX_QUOTE] and provider.measurement() == measured(TDX_QUOTE)

    evidence = provider.quote(REPORT_DATA)
    assert evidence == {"kind": "tdx", "insecure": False, "quote": "0x" + TDX_QUOTE.hex()}
    assert json.loads(json.dumps(evidence)) == evidence
    assert kernel.inblobs == [ZEROS, REPORT_DATA]  # the start-up quote, then ours
    assert normalised(kernel.ops, kernel.entries) == ONE_REPORT * 2
    assert len(set(kernel.entries)) == 2 and all(name.startswith("teebridge-") for name in kernel.entries)
    assert list(kernel.root.iterdir()) == []  # every entry removed


def test_tdx_racing_writer_is_retried_with_a_fresh_entry(
    kernel: FakeTsmKernel, caplog: pytest.LogCaptureFixture
) -> None:
    provider = tdx(kernel)
    kernel.races = 1
    assert provider.quote(REPORT_DATA)["quote"] == "0x" + TDX_QUOTE.hex()
    assert kernel.inblobs == [ZEROS, REPORT_DATA, REPORT_DATA]
    assert len(set(kernel.entries)) == 3
    assert "generation moved by 2 instead of 1" in caplog.text
    assert list(kernel.root.iterdir()) == []


def test_tdx_racing_writer_on_every_attempt_is_a_clear_error(kernel: FakeTsmKernel) -> None:
    provider = tdx(kernel)
    kernel.races = 10
    with pytest.raises(QuoteError, match=r"another process kept writing.*moved by \[2, 2, 2\].*3 attempts"):
        provider.quote(REPORT_DATA)
    assert kernel.inblobs == [ZEROS] + [REPORT_DATA] * 3
    assert list(kernel.root.iterdir()) == []


def test_tdx_race_at_start_up_stops_the_start(kernel: FakeTsmKernel) -> None:
    kernel.races, kernel.racers = 10, 5
    with pytest.raises(QuoteError, match=r"moved by \[6, 6, 6\]"):
        tdx(kernel)


def test_tdx_other_provider_is_refused_without_retry(tmp_path: Path) -> None:
    kernel = FakeTsmKernel(tmp_path / "report", provider="sev_guest")
    with pytest.raises(AttestationUnavailableError, match="'sev_guest', not 'tdx_guest'") as info:
        tdx(kernel)
    assert not isinstance(info.value, QuoteError)
    assert len(kernel.entries) == 1 and list(kernel.root.iterdir()) == []


def test_tdx_kernel_error_is_a_quote_error_and_the_entry_is_removed(kernel: FakeTsmKernel) -> None:
    provider = tdx(kernel)
    kernel.fail_inblob = OSError(5, "Input/output error")
    with pytest.raises(QuoteError, match="Input/output error"):
        provider.quote(REPORT_DATA)
    assert list(kernel.root.iterdir()) == []


def test_tdx_empty_outblob_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QuoteError, match="outblob is empty"):
        tdx(FakeTsmKernel(tmp_path / "report", outblob=b""))


def test_tdx_without_configfs_tsm(tmp_path: Path) -> None:
    with pytest.raises(AttestationUnavailableError, match=r"configfs-tsm report directory .* not found"):
        TdxConfigfsQuoteProvider(tmp_path / "absent", measured)


def test_tdx_report_data_must_be_64_bytes(kernel: FakeTsmKernel) -> None:
    provider = tdx(kernel)
    with pytest.raises(ValueError, match="64 bytes"):
        provider.quote(REPORT_DATA[:32])
    assert kernel.inblobs == [ZEROS]


class FakeGramine(FileIO):
    """Gramine's ``/dev/attestation`` on a plain directory: reading ``quote`` quotes ``user_report_data``.

    The quote it returns is the sample quote followed by the report data it used, so a test can see which
    report data each quote was made over. ``delay`` widens the window between a write and a read.
    """

    def __init__(self, root: Path, attestation_type: str = "dcap", quote: bytes = SGX_QUOTE) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.sample = quote
        self.delay = 0.0
        self.ops: list[tuple[str, str]] = []
        self.quoted: list[bytes] = []
        (root / "attestation_type").write_text(attestation_type)
        (root / "user_report_data").write_bytes(bytes(64))
        (root / "quote").write_bytes(b"")

    def write(self, path: Path, data: bytes) -> None:
        self.ops.append(("write", path.name))
        super().write(path, data)
        time.sleep(self.delay)

    def read(self, path: Path) -> bytes:
        self.ops.append(("read", path.name))
        if path.name == "quote":
            used = (self.root / "user_report_data").read_bytes()
            self.quoted.append(used)
            path.write_bytes(self.sample + used if self.sample else b"")
        return super().read(path)


def test_sgx_quote_writes_report_data_then_reads_the_quote(tmp_path: Path) -> None:
    gramine = FakeGramine(tmp_path / "attestation")
    measure = RecordingMeasure()
    provider = SgxGramineQuoteProvider(gramine.root, measure, io=gramine)
    assert isinstance(provider, QuoteProvider)
    assert (provider.kind, provider.insecure, provider.warning) == ("sgx", False, None)
    assert measure.quotes == [SGX_QUOTE + ZEROS] and provider.measurement() == measured(SGX_QUOTE + ZEROS)

    evidence = provider.quote(REPORT_DATA)
    assert evidence == {"kind": "sgx", "insecure": False, "quote": "0x" + (SGX_QUOTE + REPORT_DATA).hex()}
    assert gramine.quoted == [ZEROS, REPORT_DATA]
    assert gramine.ops == [("read", "attestation_type")] + [("write", "user_report_data"), ("read", "quote")] * 2


def test_sgx_concurrent_quotes_each_carry_their_own_report_data(tmp_path: Path) -> None:
    gramine = FakeGramine(tmp_path / "attestation")
    provider = SgxGramineQuoteProvider(gramine.root, measured, io=gramine)
    gramine.delay = 0.01
    results: dict[bytes, str] = {}

    def ask(data: bytes) -> None:
        results[data] = provider.quote(data)["quote"]

    datas = [bytes([i]) * 64 for i in range(1, 9)]
    threads = [threading.Thread(target=ask, args=(d,)) for d in datas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {d: bytes.fromhex(q[2:])[-64:] for d, q in results.items()} == {d: d for d in datas}


@pytest.mark.parametrize("kind", ["none", "epid", ""])
def test_sgx_without_dcap_is_refused(tmp_path: Path, kind: str) -> None:
    gramine = FakeGramine(tmp_path / "attestation", attestation_type=kind)
    with pytest.raises(AttestationUnavailableError, match=re.escape('sgx.remote_attestation = "dcap"')):
        SgxGramineQuoteProvider(gramine.root, measured, io=gramine)
    assert gramine.quoted == []


def test_sgx_outside_gramine_and_empty_quote(tmp_path: Path) -> None:
    with pytest.raises(AttestationUnavailableError, match="not running under Gramine"):
        SgxGramineQuoteProvider(tmp_path / "absent", measured)
    gramine = FakeGramine(tmp_path / "attestation", quote=b"")
    with pytest.raises(QuoteError, match="empty quote"):
        SgxGramineQuoteProvider(gramine.root, measured, io=gramine)


def plain_gramine(root: Path) -> Path:
    """A Gramine tree of plain files (no fake behind it): the quote is already there."""
    root.mkdir(parents=True)
    (root / "attestation_type").write_text("dcap")
    (root / "user_report_data").write_bytes(b"")
    (root / "quote").write_bytes(SGX_QUOTE)
    return root


def locations(tmp_path: Path, *, dstack: bool, tsm: bool, gramine: bool) -> TeeLocations:
    socket = tmp_path / "run" / "dstack.sock"
    if dstack:
        socket.parent.mkdir(parents=True, exist_ok=True)
        socket.write_bytes(b"")
    if tsm:
        (tmp_path / "tsm").mkdir()
    if gramine:
        plain_gramine(tmp_path / "attestation")
    return TeeLocations(tmp_path / "tsm", tmp_path / "attestation", (tmp_path / "run" / "legacy.sock", socket))


@pytest.mark.parametrize(
    "present,expected",
    [
        ((True, True, True), "dstack"),
        ((True, False, False), "dstack"),
        ((False, True, True), "tdx"),
        ((False, True, False), "tdx"),
        ((False, False, True), "sgx"),
    ],
)
def test_auto_detection_order(tmp_path: Path, present: tuple[bool, bool, bool], expected: str) -> None:
    dstack, tsm, gramine = present
    assert detect_provider(locations(tmp_path, dstack=dstack, tsm=tsm, gramine=gramine)) == expected


def test_auto_with_no_tee_refuses_and_never_falls_back_to_simulated(tmp_path: Path) -> None:
    where = locations(tmp_path, dstack=False, tsm=False, gramine=False)
    (tmp_path / "attestation").mkdir()  # /dev/attestation without quote is not Gramine attestation
    with pytest.raises(AttestationUnavailableError) as info:
        create_provider("auto", CODE_MEASUREMENT, measured, locations=where)
    message = str(info.value)
    assert "found no TEE" in message and "choose attestation 'simulated' explicitly" in message
    for part in ("dstack.sock", str(tmp_path / "tsm"), str(tmp_path / "attestation" / "quote")):
        assert part in message


def test_auto_starts_the_detected_provider(tmp_path: Path) -> None:
    where = locations(tmp_path, dstack=False, tsm=False, gramine=True)
    provider = create_provider("auto", CODE_MEASUREMENT, measured, locations=where)
    assert isinstance(provider, SgxGramineQuoteProvider)
    assert provider.measurement() == measured(SGX_QUOTE)
    assert (where.gramine_dir / "user_report_data").read_bytes() == ZEROS
    provider.quote(REPORT_DATA)
    assert (where.gramine_dir / "user_report_data").read_bytes() == REPORT_DATA

    # configfs-tsm as a plain directory: tdx is picked and really talks to it (it is no kernel, so it fails).
    (tmp_path / "b").mkdir()
    tsm_only = locations(tmp_path / "b", dstack=False, tsm=True, gramine=False)
    with pytest.raises(QuoteError, match="configfs-tsm: report entry"):
        create_provider("auto", CODE_MEASUREMENT, measured, locations=tsm_only)


@pytest.mark.parametrize("name", ["tdx", "sgx", "dstack", "auto"])
def test_hardware_providers_refuse_to_start_until_measure_is_wired(tmp_path: Path, name: str) -> None:
    where = locations(tmp_path, dstack=name == "dstack", tsm=name in ("tdx", "auto"), gramine=name == "sgx")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(MeasurementNotWiredError, match="not implemented yet") as info:
        create_provider(name, CODE_MEASUREMENT, locations=where)
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, AttestationUnavailableError)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # hardware untouched
    with pytest.raises(MeasurementNotWiredError):
        measure_not_wired(TDX_QUOTE)


def test_measure_must_return_32_bytes(tmp_path: Path, kernel: FakeTsmKernel) -> None:
    with pytest.raises(AttestationUnavailableError, match="expected 32 bytes"):
        tdx(kernel, lambda q: q[:20])

    def broken(_quote: bytes) -> bytes:
        raise ValueError("unsupported quote version 9")

    with pytest.raises(AttestationUnavailableError, match="ValueError: unsupported quote version 9"):
        tdx(kernel, broken)


def test_simulated_measurement_is_the_code_measurement_and_names_are_listed() -> None:
    provider = create_provider("simulated", CODE_MEASUREMENT, measured)
    assert isinstance(provider, QuoteProvider)
    assert provider.measurement() == CODE_MEASUREMENT and provider.insecure is True
    assert set(PROVIDERS) == {"simulated", "tdx", "sgx", "dstack"}
    with pytest.raises(AttestationUnavailableError, match=r"unknown attestation provider 'sev'.*auto, dstack, sgx"):
        create_provider("sev", CODE_MEASUREMENT)


def test_config_names_the_tee_locations_and_sealing(tmp_path: Path) -> None:
    config = CoprocessorConfig.from_env(
        {
            "TEEBRIDGE_COPROCESSOR_ATTESTATION": "auto",
            "TEEBRIDGE_COPROCESSOR_SEALING": "dstack",
            "TEEBRIDGE_COPROCESSOR_TSM_REPORT_DIR": str(tmp_path / "tsm"),
            "TEEBRIDGE_COPROCESSOR_GRAMINE_ATTESTATION_DIR": str(tmp_path / "att"),
            "TEEBRIDGE_COPROCESSOR_DSTACK_SOCKET": str(tmp_path / "d.sock"),
        },
        data_dir=tmp_path,
    )
    assert (config.attestation, config.sealing) == ("auto", "dstack")
    assert TeeLocations.from_config(config) == TeeLocations(tmp_path / "tsm", tmp_path / "att", (tmp_path / "d.sock",))
    defaults = TeeLocations.from_config(CoprocessorConfig(data_dir=tmp_path))
    assert defaults == TeeLocations()
    assert defaults.tsm_report_dir == Path("/sys/kernel/config/tsm/report")
    assert defaults.dstack_sockets[0] == Path("/var/run/dstack.sock") and Path("/var/run/tappd.sock") in (
        defaults.dstack_sockets
    )
    with pytest.raises(ValueError, match="sealing must be one of simulated, dstack"):
        CoprocessorConfig(data_dir=tmp_path, sealing="gramine")

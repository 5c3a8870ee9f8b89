"""``teebridge attest verify``: in-process through add_arguments/run, and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from attest_testdata import REPO_ROOT, SAMPLES, cli, cli_json, data_path

from teebridge.attest import main

SGX = "dcap-qvl/sgx_v3_quote.bin"
TDX4 = "dcap-qvl/tdx_v4_quote.bin"
SGX_AT = "2025-07-19T10:01:17Z"
TDX_AT = "2025-07-19T10:00:34Z"
REQUIRED_KEYS = {
    "verdict",
    "reason",
    "tcb_status",
    "advisory_ids",
    "tee",
    "version",
    "mr_enclave",
    "mr_signer",
    "mr_td",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mr_config_id",
    "report_data",
    "measurement",
}


def collateral(name: str) -> Path:
    return data_path(name.replace(".bin", "_collateral.json"))


def test_tdx_accept(tmp_path: Path) -> None:
    code, doc = cli_json("verify", data_path(TDX4), "--collateral", collateral(TDX4), "--at", TDX_AT)
    assert code == 0, doc["reason"]
    assert doc.keys() >= REQUIRED_KEYS
    expected = SAMPLES[TDX4].fields
    assert doc["verdict"] == "accept"
    assert doc["tcb_status"] == "UpToDate" and doc["advisory_ids"] == []
    assert (doc["tee"], doc["version"]) == ("tdx", 4)
    for key in ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_config_id", "report_data"):
        assert doc[key] == expected[key], key
    assert doc["mr_enclave"] is None and doc["mr_signer"] is None
    assert doc["measurement"] == "0x371190c9dbd53b7b38503f7b6d3b25d74827337f5e36f8cd0d819eb503ba9172"
    assert doc["collateral_next_update"] == "2025-07-19T10:00:35Z"
    assert (doc["pck_ca"], doc["fmspc"]) == ("platform", "B0C06F000000")


def test_sgx_without_policy_is_rejected_for_its_tcb_status() -> None:
    code, doc = cli_json("verify", data_path(SGX), "--collateral", collateral(SGX), "--at", SGX_AT)
    assert code == 1
    assert doc["verdict"] == "reject"
    assert "ConfigurationAndSWHardeningNeeded" in doc["reason"]
    assert doc["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert doc["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert (doc["tee"], doc["version"]) == ("sgx", 3)
    assert doc["mr_enclave"] == SAMPLES[SGX].fields["mr_enclave"]
    assert doc["mr_signer"] == SAMPLES[SGX].fields["mr_signer"]
    assert doc["mr_td"] is None and doc["rtmr0"] is None
    assert bytes.fromhex(doc["report_data"]).rstrip(b"\0") == b"Hello, world!"


def test_sgx_accepted_by_a_policy_that_allows_it(tmp_path: Path) -> None:
    policy = tmp_path / "sgx.json"
    policy.write_text(
        json.dumps(
            {
                "accept_tcb_status": ["ConfigurationAndSWHardeningNeeded"],
                "allowed_advisories": ["INTEL-SA-00289", "INTEL-SA-00615"],
                "sgx": [{"mr_enclave": SAMPLES[SGX].fields["mr_enclave"]}],
            }
        )
    )
    base = ("verify", data_path(SGX), "--collateral", collateral(SGX), "--at", SGX_AT)
    assert cli_json(*base, "--policy", policy)[0] == 0
    hello = b"Hello, world!".ljust(64, b"\0").hex()
    policy.write_text(policy.read_text()[:-1] + f', "expected_report_data": "{hello[:-2]}01"}}')
    code, doc = cli_json(*base, "--policy", policy)
    assert code == 1 and doc["reason_code"] == "report_data"


def test_example_policy_accepts_the_tdx_sample() -> None:
    example = REPO_ROOT / "examples" / "policy.toml"
    code, doc = cli_json(
        "verify", data_path(TDX4), "--collateral", collateral(TDX4), "--at", TDX_AT, "--policy", example
    )
    assert code == 0, doc["reason"]


def test_text_output_shows_fields_and_verdict() -> None:
    code, out, _ = cli("verify", data_path(TDX4), "--collateral", collateral(TDX4), "--at", TDX_AT)
    assert code == 0
    assert SAMPLES[TDX4].fields["mr_td"] in out
    assert "trailing_bytes         70" in out
    assert "tcb status: UpToDate" in out
    assert out.rstrip().splitlines()[-1].startswith("verdict: ACCEPT")


def test_without_collateral_the_quote_is_only_parsed() -> None:
    code, doc = cli_json("verify", data_path("dcap-qvl/tdx_v4_quote_tappd.hex"))
    assert code == 1
    assert doc["reason"] == "no collateral" and doc["verdict"] == "reject"
    assert doc["mr_td"] == SAMPLES["dcap-qvl/tdx_v4_quote_tappd.bin"].fields["mr_td"]
    assert doc["tcb_status"] is None


def test_hex_is_autodetected_without_the_suffix(tmp_path: Path) -> None:
    text = tmp_path / "quote.txt"
    text.write_text("0x" + data_path("automata/sgx_v3_quote.hex").read_text().strip() + "\n")
    code, doc = cli_json("verify", text)
    assert code == 1 and doc["reason"] == "no collateral"
    assert doc["mr_enclave"] == SAMPLES["automata/sgx_v3_quote.bin"].fields["mr_enclave"]


@pytest.mark.parametrize(
    ("at", "code_name"),
    [("2025-07-19T10:00:35Z", "collateral_expired"), ("2025-06-01T00:00:00+00:00", "collateral_not_yet_valid")],
)
def test_time_outside_the_collateral_window(at: str, code_name: str) -> None:
    code, doc = cli_json("verify", data_path(TDX4), "--collateral", collateral(TDX4), "--at", at)
    assert code == 1 and doc["reason_code"] == code_name


def test_naive_time_is_utc() -> None:
    code, doc = cli_json("verify", data_path(TDX4), "--collateral", collateral(TDX4), "--at", "2025-07-19T10:00:34")
    assert code == 0 and doc["at"] == TDX_AT


def test_malformed_quote_and_collateral_are_rejections(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x04\x00\x02\x00\x81\x00\x00\x00" + b"\xff" * 100)
    code, doc = cli_json("verify", junk, "--collateral", collateral(TDX4), "--at", TDX_AT)
    assert code == 1 and doc["reason_code"] == "malformed_quote" and doc["tee"] is None
    bad = tmp_path / "collateral.json"
    bad.write_text('{"tcb_info": 1}')
    code, doc = cli_json("verify", data_path(TDX4), "--collateral", bad, "--at", TDX_AT)
    assert code == 1 and doc["reason_code"] == "malformed_collateral"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--at", "yesterday"], "not an ISO-8601 time"),
        (["--collateral", "/nonexistent/c.json"], "cannot read collateral"),
        (["--policy", "/nonexistent/p.toml"], "cannot read policy"),
        (["--policy", "__BAD_POLICY__"], "bad policy"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text("allow_debug = 1\n")
    extra = [str(bad_policy) if e == "__BAD_POLICY__" else e for e in extra]
    code, out, err = cli("verify", data_path(TDX4), *extra)
    assert code == 2 and out == ""
    assert message in err


def test_missing_or_bad_quote_file_exits_2(tmp_path: Path) -> None:
    assert cli("verify", tmp_path / "absent.bin")[0] == 2
    bad_hex = tmp_path / "q.hex"
    bad_hex.write_text("xyz")
    code, _, err = cli("verify", bad_hex)
    assert code == 2 and "not valid hex" in err


def test_main_wrapper_and_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(data_path(TDX4)), "--collateral", str(collateral(TDX4)), "--at", TDX_AT]) == 0
    assert main(["attest", "verify", str(data_path(TDX4))]) == 1
    assert main(["verify", str(data_path(TDX4)), "--collateral", "c.json", "--pccs-url", "http://x"]) == 2
    assert main(["verify"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--collateral", "__TDX_COLLATERAL__", "--at", TDX_AT], 0),
        (["--collateral", "__TDX_COLLATERAL__", "--at", "2030-01-01T00:00:00Z"], 1),
        (["--at", "not-a-time"], 2),
    ],
)
def test_as_a_process(argv: list[str], expected: int) -> None:
    argv = [str(collateral(TDX4)) if a == "__TDX_COLLATERAL__" else a for a in argv]
    command = [sys.executable, "-c", "import sys; from teebridge.attest import main; sys.exit(main())"]
    proc = subprocess.run(
        [*command, "verify", str(data_path(TDX4)), *argv, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == expected, proc.stderr
    if expected == 2:
        assert proc.stdout == "" and "ISO-8601" in proc.stderr
        return
    doc = json.loads(proc.stdout)
    assert doc.keys() >= REQUIRED_KEYS
    assert doc["verdict"] == ("accept" if expected == 0 else "reject")

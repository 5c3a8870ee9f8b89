"""verifier.policy: what a verified quote must also satisfy, and the policy file schema."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from attest_testdata import COLLATERALS, REPO_ROOT, read, utc

from verifier.dcap import DcapVerdict, Reason, verify_quote
from verifier.policy import (
    Policy,
    PolicyError,
    SgxIdentity,
    TdxIdentity,
    evaluate,
    load_policy,
    policy_from_dict,
)
from verifier.quote import Quote, SgxReport, TdReport

SGX = "dcap-qvl/sgx_v3_quote.bin"
TDX4 = "dcap-qvl/tdx_v4_quote.bin"
AUTOMATA_SGX = "automata/sgx_v3_quote.bin"
TIMES = {SGX: utc("1752919277"), TDX4: utc("1752919234"), AUTOMATA_SGX: utc("2025-08-15T05:45:00Z")}
EXAMPLE = REPO_ROOT / "examples" / "policy.toml"


def _verified(name: str) -> tuple[Quote, DcapVerdict]:
    verdict = verify_quote(read(name), COLLATERALS[name](), TIMES[name])
    assert verdict.accepted and verdict.quote is not None, verdict.describe()
    return verdict.quote, verdict


@pytest.fixture(scope="module")
def sgx() -> tuple[Quote, DcapVerdict]:
    return _verified(SGX)


@pytest.fixture(scope="module")
def tdx() -> tuple[Quote, DcapVerdict]:
    return _verified(TDX4)


def _tdx_identity(quote: Quote, **override: bytes | None) -> TdxIdentity:
    report = quote.report
    assert isinstance(report, TdReport)
    fields = {n: getattr(report, n) for n in ("mr_td", "mr_config_id", "rtmr0", "rtmr1", "rtmr2", "rtmr3")}
    return TdxIdentity(**{**fields, **override})


def _sgx_policy(quote: Quote, **kwargs: object) -> Policy:
    report = quote.report
    assert isinstance(report, SgxReport)
    base: dict[str, object] = {
        "sgx": (SgxIdentity(mr_enclave=report.mr_enclave),),
        "accept_tcb_status": frozenset({"ConfigurationAndSWHardeningNeeded"}),
        "allowed_advisories": frozenset({"INTEL-SA-00289", "INTEL-SA-00615"}),
    }
    return Policy(**{**base, **kwargs})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- evaluate


def test_tdx_accepted_by_a_matching_policy(tdx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = tdx
    decision = Policy(tdx=(_tdx_identity(quote),)).evaluate(quote, verdict, TIMES[TDX4])
    assert decision.accept and decision.code == "accepted", decision.reason


def test_sgx_accepted_when_status_and_advisories_are_allowed(sgx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = sgx
    assert evaluate(_sgx_policy(quote), quote, verdict, TIMES[SGX]).accept


def test_tcb_status_not_in_policy_is_refused(sgx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = sgx
    decision = _sgx_policy(quote, accept_tcb_status=frozenset({"UpToDate"})).evaluate(quote, verdict, TIMES[SGX])
    assert not decision.accept and decision.code == "tcb_status"
    assert "ConfigurationAndSWHardeningNeeded" in decision.reason


def test_advisory_not_in_policy_is_refused(sgx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = sgx
    decision = _sgx_policy(quote, allowed_advisories=frozenset({"INTEL-SA-00615"})).evaluate(quote, verdict, TIMES[SGX])
    assert not decision.accept and decision.code == "advisory"
    assert "INTEL-SA-00289" in decision.reason and "INTEL-SA-00615" not in decision.reason


def test_debug_sgx_enclave_is_refused(sgx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = sgx
    report = quote.report
    assert isinstance(report, SgxReport)
    debug_report = dataclasses.replace(report, attributes=bytes([report.attributes[0] | 0x02]) + report.attributes[1:])
    debug_quote = dataclasses.replace(quote, report=debug_report)
    assert debug_quote.debug
    decision = _sgx_policy(quote).evaluate(debug_quote, verdict, TIMES[SGX])
    assert not decision.accept and decision.code == "debug"
    # the flag exists for tests, and only it lets a debug enclave through
    assert _sgx_policy(quote, allow_debug=True).evaluate(debug_quote, verdict, TIMES[SGX]).accept


def test_debug_td_is_refused_even_without_a_policy(tdx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = tdx
    report = quote.report
    assert isinstance(report, TdReport)
    debug_quote = dataclasses.replace(
        quote, report=dataclasses.replace(report, td_attributes=b"\x01" + report.td_attributes[1:])
    )
    for policy in (Policy(tdx=(_tdx_identity(quote),)), Policy.tcb_only()):
        decision = policy.evaluate(debug_quote, verdict, TIMES[TDX4])
        assert not decision.accept and decision.code == "debug"


def test_wrong_report_data_is_refused(tdx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = tdx
    policy = Policy(tdx=(_tdx_identity(quote),))
    right = quote.report_data
    wrong = bytes([right[0] ^ 1]) + right[1:]
    assert policy.evaluate(quote, verdict, TIMES[TDX4], expected_report_data=right).accept
    decision = policy.evaluate(quote, verdict, TIMES[TDX4], expected_report_data=wrong)
    assert not decision.accept and decision.code == "report_data"
    in_file = dataclasses.replace(policy, expected_report_data=wrong)
    assert in_file.evaluate(quote, verdict, TIMES[TDX4]).code == "report_data"
    # both expectations must hold when both are given
    assert in_file.evaluate(quote, verdict, TIMES[TDX4], expected_report_data=right).code == "report_data"


@pytest.mark.parametrize("field", ["mr_td", "mr_config_id", "rtmr0", "rtmr1", "rtmr2", "rtmr3"])
def test_each_tdx_register_is_checked(tdx: tuple[Quote, DcapVerdict], field: str) -> None:
    quote, verdict = tdx
    policy = Policy(tdx=(_tdx_identity(quote, **{field: b"\x01" * 48}),))
    decision = policy.evaluate(quote, verdict, TIMES[TDX4])
    assert not decision.accept and decision.code == "identity"
    omitted = Policy(tdx=(_tdx_identity(quote, **{field: None}),))
    assert omitted.evaluate(quote, verdict, TIMES[TDX4]).accept


def test_sgx_identity_by_signer(sgx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = sgx
    report = quote.report
    assert isinstance(report, SgxReport)

    def by_signer(**kwargs: object) -> Policy:
        identity = SgxIdentity(**{"mr_signer": report.mr_signer, "isv_prod_id": 0, "min_isv_svn": 0, **kwargs})
        return _sgx_policy(quote, sgx=(identity,))

    assert by_signer().evaluate(quote, verdict, TIMES[SGX]).accept
    assert by_signer(min_isv_svn=1).evaluate(quote, verdict, TIMES[SGX]).code == "identity"
    assert by_signer(isv_prod_id=1).evaluate(quote, verdict, TIMES[SGX]).code == "identity"
    assert by_signer(mr_signer=b"\x00" * 32).evaluate(quote, verdict, TIMES[SGX]).code == "identity"
    wrong_enclave = _sgx_policy(quote, sgx=(SgxIdentity(mr_enclave=b"\x00" * 32),))
    assert wrong_enclave.evaluate(quote, verdict, TIMES[SGX]).code == "identity"


def test_sgx_quote_against_a_tdx_only_policy(sgx: tuple[Quote, DcapVerdict], tdx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = sgx
    policy = _sgx_policy(quote, sgx=(), tdx=(_tdx_identity(tdx[0]),))
    assert policy.evaluate(quote, verdict, TIMES[SGX]).code == "identity"


def test_collateral_age_and_staleness(tdx: tuple[Quote, DcapVerdict]) -> None:
    quote, verdict = tdx
    at = TIMES[TDX4]
    policy = Policy(tdx=(_tdx_identity(quote),))
    # oldest counted part: the PCK CRL, issued 2025-06-19T10:00:35Z, i.e. 29 days 23:59:59 before `at`
    assert dataclasses.replace(policy, max_collateral_age=timedelta(days=30)).evaluate(quote, verdict, at).accept
    strict = dataclasses.replace(policy, max_collateral_age=timedelta(days=29))
    decision = strict.evaluate(quote, verdict, at)
    assert not decision.accept and decision.code == "collateral_age"
    later = policy.evaluate(quote, verdict, utc("2025-07-19T10:00:35Z"))
    assert not later.accept and later.code == "collateral_age" and "stale" in later.reason


def test_unverified_quote_is_refused(tdx: tuple[Quote, DcapVerdict]) -> None:
    quote, _ = tdx
    failed = DcapVerdict(False, TIMES[TDX4], Reason.QUOTE_SIGNATURE_INVALID, "bad", quote=quote)
    decision = Policy(tdx=(_tdx_identity(quote),)).evaluate(quote, failed, TIMES[TDX4])
    assert not decision.accept and decision.code == "not_verified" and "quote_signature_invalid" in decision.reason


def test_verdict_of_another_quote_is_refused(sgx: tuple[Quote, DcapVerdict], tdx: tuple[Quote, DcapVerdict]) -> None:
    decision = Policy(tdx=(_tdx_identity(tdx[0]),)).evaluate(tdx[0], sgx[1], TIMES[TDX4])
    assert not decision.accept and decision.code == "quote_mismatch"


def test_evaluation_time_must_be_aware(tdx: tuple[Quote, DcapVerdict]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Policy.tcb_only().evaluate(*tdx, TIMES[TDX4].replace(tzinfo=None))


def test_tcb_only_judgement(sgx: tuple[Quote, DcapVerdict], tdx: tuple[Quote, DcapVerdict]) -> None:
    assert Policy.tcb_only().evaluate(*tdx, TIMES[TDX4]).accept
    assert Policy.tcb_only().evaluate(*sgx, TIMES[SGX]).code == "tcb_status"


# ------------------------------------------------------------------------------------------------ files


def test_example_policy(sgx: tuple[Quote, DcapVerdict], tdx: tuple[Quote, DcapVerdict]) -> None:
    policy = load_policy(EXAMPLE)
    assert policy.accept_tcb_status == {"UpToDate", "SWHardeningNeeded"}
    assert not policy.allow_debug
    assert policy.evaluate(*tdx, TIMES[TDX4]).accept
    assert policy.evaluate(*sgx, TIMES[SGX]).code == "tcb_status"  # ConfigurationAndSWHardeningNeeded
    automata = _verified(AUTOMATA_SGX)  # SWHardeningNeeded with INTEL-SA-00615, allowed by signer
    assert policy.evaluate(*automata, TIMES[AUTOMATA_SGX]).accept


def test_toml_and_json_give_the_same_policy(tmp_path: Path) -> None:
    report_data, signer, mr_td = "ab" * 64, "11" * 32, "22" * 48
    toml_text = f"""
accept_tcb_status = ["UpToDate", "OutOfDate"]
allowed_advisories = ["intel-sa-00615"]
max_collateral_age_seconds = 86400
expected_report_data = "0x{report_data}"

[[sgx]]
mr_signer = "{signer}"
isv_prod_id = 3
min_isv_svn = 2

[[tdx]]
mr_td = "{mr_td}"
"""
    doc = {
        "accept_tcb_status": ["UpToDate", "OutOfDate"],
        "allowed_advisories": ["intel-sa-00615"],
        "max_collateral_age_seconds": 86400,
        "expected_report_data": "0x" + "ab" * 64,
        "sgx": [{"mr_signer": "11" * 32, "isv_prod_id": 3, "min_isv_svn": 2}],
        "tdx": [{"mr_td": "22" * 48}],
    }
    (tmp_path / "p.toml").write_text(toml_text)
    (tmp_path / "p.json").write_text(json.dumps(doc))
    from_toml = load_policy(tmp_path / "p.toml")
    assert from_toml == load_policy(tmp_path / "p.json")
    assert from_toml.allowed_advisories == {"INTEL-SA-00615"}
    assert from_toml.max_collateral_age == timedelta(days=1)
    assert from_toml.sgx == (SgxIdentity(mr_signer=b"\x11" * 32, isv_prod_id=3, min_isv_svn=2),)
    assert from_toml.tdx == (TdxIdentity(mr_td=b"\x22" * 48),)
    assert from_toml.expected_report_data == b"\xab" * 64


def test_defaults() -> None:
    policy = policy_from_dict({"tdx": [{"mr_td": "00" * 48}]})
    assert policy.accept_tcb_status == {"UpToDate"}
    assert policy.allowed_advisories == frozenset()
    assert policy.max_collateral_age is None and policy.expected_report_data is None
    assert policy.allow_debug is False


TD = {"mr_td": "00" * 48}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"tdx": [TD], "allow_debugging": True}, "unknown key(s) allow_debugging"),
        ({"tdx": [TD], "version": 2}, "unsupported policy version 2"),
        ({"tdx": [TD], "accept_tcb_status": ["Fine"]}, "unknown TCB status 'Fine'"),
        ({"tdx": [TD], "accept_tcb_status": ["Revoked"]}, "'Revoked' can never be accepted"),
        ({"tdx": [TD], "accept_tcb_status": []}, "at least one status"),
        ({"tdx": [TD], "accept_tcb_status": "UpToDate"}, "must be a list of non-empty strings"),
        ({"tdx": [TD], "allowed_advisories": [1]}, "allowed_advisories: must be a list"),
        ({"tdx": [TD], "max_collateral_age_seconds": 0}, "positive integer"),
        ({"tdx": [TD], "max_collateral_age_seconds": "1d"}, "positive integer"),
        ({"tdx": [TD], "allow_debug": "yes"}, "allow_debug: must be true or false"),
        ({"tdx": [TD], "expected_report_data": "00" * 32}, "expected_report_data: must be 64 bytes"),
        ({}, "allows no enclave identity"),
        ({"tdx": [{}]}, "tdx[0]: pins nothing"),
        ({"tdx": [{"mr_td": "00" * 32}]}, "tdx[0].mr_td: must be 48 bytes"),
        ({"tdx": [{"mr_td": "zz"}]}, "tdx[0].mr_td: not valid hex"),
        ({"tdx": [{"mrtd": "00" * 48}]}, "tdx[0]: unknown key(s) mrtd"),
        ({"tdx": {"mr_td": "00" * 48}}, "tdx: must be a list of tables"),
        ({"sgx": [{}]}, "sgx[0]: needs mr_enclave, or mr_signer with isv_prod_id"),
        ({"sgx": [{"mr_signer": "00" * 32}]}, "mr_signer needs isv_prod_id"),
        ({"sgx": [{"mr_enclave": "00" * 32, "min_isv_svn": 1}]}, "only apply together with mr_signer"),
        ({"sgx": [{"mr_signer": "00" * 32, "isv_prod_id": 70000}]}, "isv_prod_id: must be an integer from 0 to 65535"),
        ({"sgx": [{"mr_enclave": "00" * 48}]}, "sgx[0].mr_enclave: must be 32 bytes"),
        ({"sgx": [{"mr_enclave": "00" * 32, "name": 5}]}, "sgx[0].name: must be a string"),
        ([], "a policy is a table/object"),
    ],
)
def test_bad_schema_is_an_error(doc: object, message: str) -> None:
    with pytest.raises(PolicyError) as excinfo:
        policy_from_dict(doc)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.toml", "accept_tcb_status = [", "not valid TOML"),
        ("p.json", "{", "not valid JSON"),
        ("p.yaml", "a: 1", "end in .toml or .json"),
        ("p.toml", 'allow_debug = "true"\n[[tdx]]\nmr_td = "' + "00" * 48 + '"\n', "p.toml: allow_debug"),
    ],
)
def test_bad_files_are_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(PolicyError, match=message):
        load_policy(tmp_path / name)

"""Job definitions, the registry, the credit-score formula, JSON paths and value conversion."""

from __future__ import annotations

import time
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coprocessor.jobs import BUILTIN_JOBS, InvalidJobInputError, Job, JobContext, JobError, JobRegistry
from coprocessor.jobs import default_registry as make_default_registry
from coprocessor.jobs.convert import convert, scale_to_int
from coprocessor.jobs.credit_score import CREDIT_SCORE_JOB, credit_score
from coprocessor.jobs.echo import ECHO_JOB
from coprocessor.jobs.jsonpath import extract, parse_path
from verifier.protocol import job_id


def context() -> JobContext:
    return JobContext(deadline=time.monotonic() + 5, http_timeout_seconds=1, http_max_response_bytes=1024)


def test_builtin_job_ids_are_keccak_of_name_at_version() -> None:
    names = {job.label: job.job_id for job in BUILTIN_JOBS}
    assert names == {
        "confidential.credit-score@1": job_id("confidential.credit-score", 1),
        "http.json@1": job_id("http.json", 1),
        "http.json@2": job_id("http.json", 2),
        "llm.chat@1": job_id("llm.chat", 1),
        "echo@1": job_id("echo", "1"),
        "price@1": job_id("price", 1),
        "ai.embed@1": job_id("ai.embed", 1),
        "ai.similarity@1": job_id("ai.similarity", 1),
        "ai.classify@1": job_id("ai.classify", 1),
    }


def test_registry_register_get_list_and_duplicates() -> None:
    registry = make_default_registry()
    assert len(registry) == 9
    assert registry.get(ECHO_JOB.job_id) is ECHO_JOB
    assert registry.get(b"\x00" * 32) is None
    assert [j.name for j in registry.list()] == [
        "ai.classify",
        "ai.embed",
        "ai.similarity",
        "confidential.credit-score",
        "echo",
        "http.json",
        "http.json",
        "llm.chat",
        "price",
    ]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ECHO_JOB)
    assert ECHO_JOB.job_id in registry and len(JobRegistry()) == 0


def test_job_rejects_bad_abi_types_and_timeouts() -> None:
    with pytest.raises(ValueError, match="not an ABI type"):
        Job("bad", 1, ("uint257",), None, lambda c, a: a)
    with pytest.raises(ValueError, match="positive"):
        Job("bad", 1, None, None, lambda c, a: a, timeout_seconds=0)


def test_encode_output_checks_types() -> None:
    assert CREDIT_SCORE_JOB.encode_output((700,)) == (700).to_bytes(32, "big")
    with pytest.raises(JobError, match="ABI output types"):
        CREDIT_SCORE_JOB.encode_output((70000,))
    with pytest.raises(JobError, match="non-bytes"):
        ECHO_JOB.encode_output("text")


@pytest.mark.parametrize(
    "income,debt,missed,age,score",
    [
        (100_000, 0, 0, 120, 850),  # best case
        (100_000, 0, 0, 600, 850),  # age capped at 10 years
        (0, 0, 50, 0, 300),  # worst case: no income, many misses, new account
        (0, 5, 0, 0, 500),  # no income: no DTI points
        (100_000, 100_000, 5, 0, 300),  # DTI 100%, 5 misses
        (100_000, 250_000, 0, 0, 500),  # DTI capped at 100%
        (100_000, 30_000, 1, 60, 300 + 175 + 160 + 50),
        (90_000, 1, 0, 1, 300 + 250 + 200 + 0),  # dtiBps rounds down to 0; 1 month rounds down to 0 points
        (100_000, 1_000, 0, 13, 300 + 247 + 200 + 10),  # dtiBps 100 -> 247.5 rounds down
    ],
)
def test_credit_score_formula(income: int, debt: int, missed: int, age: int, score: int) -> None:
    assert credit_score(income, debt, missed, age) == score
    assert CREDIT_SCORE_JOB.handler(context(), (income, debt, missed, age)) == (score,)


@given(st.integers(0, 2**256 - 1), st.integers(0, 2**256 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1))
def test_credit_score_is_always_in_range(income: int, debt: int, missed: int, age: int) -> None:
    assert 300 <= credit_score(income, debt, missed, age) <= 850


def test_more_debt_never_raises_the_score() -> None:
    scores = [credit_score(50_000, debt, 1, 24) for debt in range(0, 80_000, 5_000)]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]


@pytest.mark.parametrize(
    "path,segments",
    [
        ("", []),
        ("$", []),
        ("a", ["a"]),
        ("a.b[0].c", ["a", "b", 0, "c"]),
        ("$.a.b", ["a", "b"]),
        ("$[2].x", [2, "x"]),
        ("[10]", [10]),
        ('a["key.with.dots"].v', ["a", "key.with.dots", "v"]),
        ("a.0", ["a", "0"]),
        ("a[0][1]", ["a", 0, 1]),
    ],
)
def test_parse_path(path: str, segments: list[object]) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize("path", ["a..b", "a.", ".a", "$a", "a[", "a[-1]", "a[x]", "a]b", 'a["b]', "a[0]b", "x" * 2000])
def test_parse_path_rejects_malformed(path: str) -> None:
    with pytest.raises(InvalidJobInputError, match="jsonPath"):
        parse_path(path)


def test_extract() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert extract(doc, parse_path("a.b[1].c")) == 2
    assert extract(doc, []) is doc
    assert extract(doc, ["n"]) is None
    with pytest.raises(JobError, match="segment 2: key not found"):
        extract(doc, ["a", "x"])
    with pytest.raises(JobError, match="segment 3: array index out of range"):
        extract(doc, ["a", "b", 5])
    with pytest.raises(JobError, match="segment 2: expected an array, found object"):
        extract(doc, ["a", 0])
    with pytest.raises(JobError, match="segment 5: expected an object, found number"):
        extract(doc, ["a", "b", 0, "c", "d"])


@pytest.mark.parametrize(
    "value,result_type,decimals,expected",
    [
        (Decimal("3150.123456789"), "uint256", 2, 315012),
        ("3150.123456789", "uint256", 9, 3150123456789),
        ("3150.123456789", "uint256", 12, 3150123456789000),
        (12, "uint256", 0, 12),
        ("1e3", "uint256", 0, 1000),
        ("0.999", "uint256", 2, 99),
        (Decimal("0.0001"), "uint256", 2, 0),
        (Decimal("-42.129"), "int256", 2, -4212),  # truncated toward zero, not floored
        ("-0.5", "int256", 0, 0),
        (2**256 - 1, "uint256", 0, 2**256 - 1),
        (-(2**255), "int256", 0, -(2**255)),
        (True, "bool", 0, True),
        ("hi", "string", 5, "hi"),
        ("0x" + "ab" * 32, "bytes32", 0, b"\xab" * 32),
    ],
)
def test_convert(value: object, result_type: str, decimals: int, expected: object) -> None:
    assert convert(value, result_type, decimals) == expected


@pytest.mark.parametrize(
    "value,result_type,decimals,message",
    [
        (-1, "uint256", 0, "uint256"),
        (2**256, "uint256", 0, "uint256"),
        (2**255, "int256", 0, "int256"),
        ("1e999999", "uint256", 0, "out of range"),
        (Decimal("1e70"), "uint256", 20, "out of range"),
        (True, "uint256", 0, "found boolean"),
        (None, "uint256", 0, "found null"),
        ("12abc", "uint256", 0, "non-numeric"),
        ("NaN", "uint256", 0, "non-numeric"),
        ("Infinity", "int256", 0, "non-numeric"),
        (Decimal("NaN"), "uint256", 0, "finite"),
        (1, "bool", 0, "boolean"),
        (1, "string", 0, "string"),
        ("0x1234", "bytes32", 0, "64 hex"),
        ({"a": 1}, "bytes32", 0, "object"),
    ],
)
def test_convert_rejects(value: object, result_type: str, decimals: int, message: str) -> None:
    with pytest.raises(JobError, match=message):
        convert(value, result_type, decimals)


def test_convert_rejects_unknown_result_type_as_invalid_input() -> None:
    with pytest.raises(InvalidJobInputError, match="resultType"):
        convert(1, "uint8", 0)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**30), max_value=10**30))
def test_scale_is_exact_truncation(number: Decimal) -> None:
    for decimals in (0, 3, 18):
        with localcontext() as ctx:
            ctx.prec = 200  # enough digits for the product to be exact
            expected = int(number * Decimal(10) ** decimals)  # int() truncates toward zero
        assert scale_to_int(number, decimals) == expected


def test_echo_returns_payload() -> None:
    assert ECHO_JOB.handler(context(), b"\x01\x02") == b"\x01\x02"

"""The http.json job against a real HTTP server on 127.0.0.1 (started in a thread by conftest)."""

from __future__ import annotations

import time

import pytest
from coprocessor_testdata import LOCAL_EGRESS_ALLOW
from eth_abi import decode

from coprocessor.egress import EgressPolicy
from coprocessor.jobs import InvalidJobInputError, JobContext, JobError
from coprocessor.jobs.http_json import HTTP_JSON_JOB, HTTP_JSON_V2_JOB

LOCAL = EgressPolicy.allowing(*LOCAL_EGRESS_ALLOW)


def run(url: str, path: str, result_type: str, decimals: int = 0, *, timeout: float = 0.5, limit: int = 2048) -> bytes:
    context = JobContext(
        time.monotonic() + 5, http_timeout_seconds=timeout, http_max_response_bytes=limit, egress=LOCAL
    )
    result = HTTP_JSON_JOB.handler(context, (url, path, result_type, decimals))
    assert isinstance(result, bytes)
    return result


def test_job_shape() -> None:
    assert HTTP_JSON_JOB.input_types == ("string", "string", "string", "uint8")
    assert HTTP_JSON_JOB.output_types is None


@pytest.mark.parametrize(
    "path,result_type,decimals,expected",
    [
        ("data.markets[0].price", "uint256", 2, 315012),  # numeric string, truncated
        ("$.data.markets[0].price", "uint256", 9, 3150123456789),
        ("data.markets[1].price", "uint256", 3, 12500),  # JSON number, exact
        ("data.markets[1].up", "bool", 0, True),
        ("negative", "int256", 2, -4212),
        ("data.markets[0].symbol", "string", 0, "ETH"),
        ("hash", "bytes32", 0, b"\xab" * 32),
        ('["key.with.dots"].v', "uint256", 0, 7),
    ],
)
def test_extracts_and_encodes(json_server: str, path: str, result_type: str, decimals: int, expected: object) -> None:
    result = run(json_server + "/price", path, result_type, decimals)
    assert decode([result_type], result) == (expected,)


def test_follows_same_scheme_redirects(json_server: str) -> None:
    assert decode(["string"], run(json_server + "/redirect/ok", "name", "string")) == ("teebridge",)


@pytest.mark.parametrize(
    "route,path,result_type,message",
    [
        ("/status/500", "", "string", "upstream returned HTTP 500"),
        ("/missing", "", "string", "upstream returned HTTP 404"),
        ("/text", "", "string", "not valid JSON"),
        ("/nan", "v", "uint256", "not valid JSON"),
        ("/price", "data.nothing", "uint256", "segment 2: key not found"),
        ("/price", "data.markets[5]", "uint256", "index out of range"),
        ("/price", "name", "uint256", "non-numeric string"),
        ("/price", "big", "uint256", "out of range"),
        ("/price", "data", "string", "found object"),
        ("/huge", "pad", "string", "larger than 2048 bytes"),
        ("/huge/unannounced", "pad", "string", "larger than 2048 bytes"),
        ("/huge/announced", "pad", "string", "larger than 2048 bytes"),
        ("/redirect/ftp", "", "string", "not http or https"),
        ("/redirect/loop", "", "string", "redirected more than 5 times"),
    ],
)
def test_upstream_failures(json_server: str, route: str, path: str, result_type: str, message: str) -> None:
    with pytest.raises(JobError, match=message) as info:
        run(json_server + route, path, result_type)
    assert not isinstance(info.value, InvalidJobInputError)
    assert json_server not in info.value.reason and route not in info.value.reason  # the URL is not published


def test_timeout(json_server: str) -> None:
    started = time.monotonic()
    with pytest.raises(JobError, match="timed out"):
        run(json_server + "/slow", "", "string", timeout=0.2)
    assert time.monotonic() - started < 1.2


def test_connection_refused_is_a_job_failure() -> None:
    with pytest.raises(JobError, match="upstream request failed"):
        run("http://127.0.0.1:9/", "", "string")


@pytest.mark.parametrize(
    "url,path,result_type,message",
    [
        ("ftp://127.0.0.1/x", "", "string", "http:// or https://"),
        ("file:///etc/passwd", "", "string", "http:// or https://"),
        ("/relative", "", "string", "http:// or https://"),
        ("http://127.0.0.1/", "a..b", "string", "jsonPath"),
        ("http://127.0.0.1/", "", "address", "resultType"),
    ],
)
def test_invalid_inputs(url: str, path: str, result_type: str, message: str) -> None:
    with pytest.raises(InvalidJobInputError, match=message):
        run(url, path, result_type)


def test_no_time_left_in_budget(json_server: str) -> None:
    context = JobContext(time.monotonic() - 1, http_timeout_seconds=1, http_max_response_bytes=1024)
    with pytest.raises(JobError, match="no time left"):
        HTTP_JSON_JOB.handler(context, (json_server + "/price", "", "string", 0))


# ---------------------------------------------------------------- version 2: headers and sealed secrets

API_KEY = "sk-test-0123456789abcdef"


def run_v2(url: str, headers: list[str], secrets: dict[str, str]) -> bytes:
    context = JobContext(
        time.monotonic() + 5, http_timeout_seconds=0.5, http_max_response_bytes=2048, secrets=secrets, egress=LOCAL
    )
    result = HTTP_JSON_V2_JOB.handler(context, (url, headers, "balance", "uint256", 1))
    assert isinstance(result, bytes)
    return result


def test_v2_fills_secrets_into_headers_and_url(json_server: str) -> None:
    by_header = run_v2(f"{json_server}/private", ["X-Api-Key: {{secrets.apiKey}}"], {"apiKey": API_KEY})
    by_query = run_v2(f"{json_server}/private?key={{{{secrets.apiKey}}}}", [], {"apiKey": API_KEY})
    assert decode(["uint256"], by_header) == decode(["uint256"], by_query) == (12345,)


def test_v2_without_the_secret_fails_and_names_no_value(json_server: str) -> None:
    with pytest.raises(InvalidJobInputError, match="names secret 'apiKey'"):
        run_v2(f"{json_server}/private", ["X-Api-Key: {{secrets.apiKey}}"], {})
    with pytest.raises(JobError, match="HTTP 401") as info:
        run_v2(f"{json_server}/private", ["X-Api-Key: {{secrets.apiKey}}"], {"apiKey": "sk-wrong-key-000000"})
    assert "sk-wrong" not in str(info.value)


@pytest.mark.parametrize(
    "header,message",
    [("no colon", "Name: value"), ("Host: evil", "set by the job"), ("X-A: {{secrets.k}}", "line break")],
)
def test_v2_refuses_bad_headers(json_server: str, header: str, message: str) -> None:
    with pytest.raises(InvalidJobInputError, match=message):
        run_v2(f"{json_server}/private", [header], {"k": "line\r\nbreak!"})

"""``http.json`` versions 1 and 2: fetch a JSON document over HTTP(S) and return one value from it.

Version 2 takes ``(string url, string[] headers, string jsonPath, string resultType, uint8 decimals)``:
``headers`` are ``"Name: value"`` lines, and ``{{secrets.NAME}}`` in the url or a header value is replaced
by that value of the request's sealed secret set (docs/confidentiality.md). Everything else is version 1:

Input ``(string url, string jsonPath, string resultType, uint8 decimals)``; output ``abi.encode(value)`` with
``value`` of type ``resultType`` (one of ``uint256``, ``int256``, ``bool``, ``string``, ``bytes32``).

1. ``url`` must be ``http://`` or ``https://`` with a host. The job sends ``GET`` with
   ``Accept: application/json``, follows at most 5 redirects and only to http/https URLs, and ignores proxy
   settings from the environment. Every connection, each redirect hop included, goes only to public
   addresses, checked on the resolved address (:mod:`coprocessor.egress`; the operator's ``egress_allow``
   lists exceptions): a loopback, private, link-local... destination is JOB_FAILED.
2. The response must have a 2xx status, arrive within ``http_timeout_seconds`` (and within the job's time
   budget), and be at most ``http_max_response_bytes`` long after content decoding.
3. The body is parsed as JSON (numbers as exact decimals; ``NaN``/``Infinity`` are rejected), the value at
   ``jsonPath`` is taken (syntax in :mod:`coprocessor.jobs.jsonpath`) and converted by ``resultType`` with
   ``decimals`` (rules in :mod:`coprocessor.jobs.convert`: numbers are scaled by ``10**decimals`` and
   truncated toward zero).

A malformed url, jsonPath or resultType is INVALID_INPUT; every upstream problem (status, timeout, size,
not JSON, path missing, wrong type) is JOB_FAILED with a reason that names the problem but never the URL,
the path or the response body (the input may have been sent encrypted).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx
from eth_abi import encode

from coprocessor.egress import EgressRefusedError, guarded_client
from coprocessor.jobs.base import InvalidJobInputError, Job, JobContext, JobError
from coprocessor.jobs.convert import check_result_type, convert
from coprocessor.jobs.jsonpath import extract, parse_path

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048


def check_url(url: str) -> httpx.URL:
    """The parsed URL; raises ``InvalidJobInputError`` unless it is an absolute http(s) URL with a host."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidJobInputError(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise InvalidJobInputError("url is not a valid URL") from exc
    if parsed.scheme not in ALLOWED_SCHEMES or not parsed.host:
        raise InvalidJobInputError("url must be an absolute http:// or https:// URL")
    return parsed


def _refuse_other_schemes(request: httpx.Request) -> None:
    if request.url.scheme not in ALLOWED_SCHEMES:
        raise JobError("upstream redirected to a URL that is not http or https")


def fetch(url: httpx.URL, context: JobContext, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` within the context's time and size limits, connecting only where ``context.egress`` allows;
    ``JobError`` on any upstream failure or refused destination."""
    budget = min(context.http_timeout_seconds, context.remaining())
    if budget <= 0:
        raise JobError("no time left in the job budget for the upstream request")
    deadline = time.monotonic() + budget
    limit = context.http_max_response_bytes
    try:
        with (
            guarded_client(
                context.egress,
                timeout=httpx.Timeout(budget),
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                event_hooks={"request": [_refuse_other_schemes]},
            ) as client,
            client.stream("GET", url, headers={"Accept": "application/json", **(headers or {})}) as response,
        ):
            if not response.is_success:
                raise JobError(f"upstream returned HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise JobError(f"upstream response is larger than {limit} bytes")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise JobError(f"upstream response is larger than {limit} bytes")
                if time.monotonic() > deadline:
                    raise JobError(f"upstream request timed out after {budget:.3g} s")
            return bytes(body)
    except EgressRefusedError as exc:
        raise JobError(exc.reason) from None
    except httpx.TimeoutException as exc:
        raise JobError(f"upstream request timed out after {budget:.3g} s") from exc
    except httpx.TooManyRedirects as exc:
        raise JobError(f"upstream redirected more than {MAX_REDIRECTS} times") from exc
    except httpx.HTTPError as exc:
        raise JobError(f"upstream request failed ({type(exc).__name__})") from exc


def _reject_constant(_name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def parse_json(body: bytes) -> Any:
    """Parse a JSON body with exact decimal numbers; ``JobError`` if it is not JSON."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, ArithmeticError, RecursionError) as exc:
        raise JobError("upstream response is not valid JSON") from exc


def _handle(context: JobContext, args: tuple[str, str, str, int]) -> bytes:
    url, json_path, result_type, decimals = args
    parsed_url = check_url(url)
    segments = parse_path(json_path)
    check_result_type(result_type)
    document = parse_json(fetch(parsed_url, context))
    value = convert(extract(document, segments), result_type, decimals)
    return encode([result_type], [value])


SECRET_PLACEHOLDER = re.compile(r"\{\{secrets\.([A-Za-z0-9_.-]{1,64})\}\}")
MAX_HEADERS = 16
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def fill_secrets(template: str, secrets: Mapping[str, str], what: str) -> str:
    """``template`` with every ``{{secrets.NAME}}`` replaced by that secret; ``InvalidJobInputError`` naming
    the missing *name* (never a value) when the request's secret set has no such entry."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in secrets:
            raise InvalidJobInputError(f"{what} names secret {name!r}, which the request's secret set does not have")
        return secrets[name]

    return SECRET_PLACEHOLDER.sub(value, template)


def parse_headers(lines: Sequence[str], secrets: Mapping[str, str]) -> dict[str, str]:
    """``"Name: value"`` lines into a dict, with secrets filled into the values."""
    if len(lines) > MAX_HEADERS:
        raise InvalidJobInputError(f"at most {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for index, line in enumerate(lines):
        name, sep, raw = line.partition(":")
        name = name.strip()
        if not sep or not name or not name.isascii() or any(c in name for c in " \t\r\n"):
            raise InvalidJobInputError(f"headers[{index}] must be 'Name: value'")
        if name.lower() in FORBIDDEN_HEADERS:
            raise InvalidJobInputError(f"headers[{index}]: {name} is set by the job")
        filled = fill_secrets(raw.strip(), secrets, f"headers[{index}]")
        if any(c in filled for c in "\r\n"):
            raise InvalidJobInputError(f"headers[{index}] value contains a line break")
        headers[name] = filled
    return headers


def _handle_v2(context: JobContext, args: tuple[str, list[str], str, str, int]) -> bytes:
    url_template, header_lines, json_path, result_type, decimals = args
    headers = parse_headers(header_lines, context.secrets)
    parsed_url = check_url(fill_secrets(url_template, context.secrets, "url"))
    segments = parse_path(json_path)
    check_result_type(result_type)
    document = parse_json(fetch(parsed_url, context, headers))
    value = convert(extract(document, segments), result_type, decimals)
    return encode([result_type], [value])


HTTP_JSON_V2_JOB = Job(
    name="http.json",
    version=2,
    input_types=("string", "string[]", "string", "string", "uint8"),
    output_types=None,
    handler=_handle_v2,
    description=(
        "http.json@1 plus request headers ('Name: value'); {{secrets.NAME}} in the url or a header value is "
        "replaced by that value of the request's sealed secret set (option 0x10)."
    ),
)

HTTP_JSON_JOB = Job(
    name="http.json",
    version=1,
    input_types=("string", "string", "string", "uint8"),
    output_types=None,
    handler=_handle,
    description=(
        "GET a JSON URL, take the value at jsonPath and return abi.encode(value) as resultType "
        "(uint256, int256, bool, string or bytes32); numbers are scaled by 10**decimals, truncated toward zero."
    ),
)

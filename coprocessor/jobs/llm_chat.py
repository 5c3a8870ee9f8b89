"""``llm.chat`` version 1: one chat completion from an OpenAI-compatible endpoint, committed to what was asked.

Input ``(string endpoint, string model, string system, string prompt, uint32 maxTokens, uint16 temperatureMilli,
uint64 seed)``: ``endpoint`` is the API base URL (``https://api.openai.com/v1``); the job POSTs
``{endpoint}/chat/completions`` with ``model``, the messages (``system`` first when not empty, then the user's
``prompt``), ``max_tokens``, ``temperature = temperatureMilli / 1000`` and ``seed``. The API key is the value
``apiKey`` of the request's sealed secret set (option 0x10, docs/confidentiality.md), sent as
``Authorization: Bearer``; a request without a secret set calls the endpoint without one (a self-hosted model).

Output ``(bytes32 endpointHash, string model, bytes32 promptHash, bytes32 responseHash, string response)``::

    endpointHash = keccak256(utf8(endpoint))
    promptHash   = keccak256(abi.encode(string system, string prompt, uint32 maxTokens,
                                        uint16 temperatureMilli, uint64 seed))
    responseHash = keccak256(utf8(response))

so the signed result says which endpoint and model answered which prompt. A long answer makes the result go
off-chain (status RESULT_OFFCHAIN: its hash and length on-chain, the bytes from the relayer). Every upstream
problem (HTTP status, timeout, size, not a chat completion, an endpoint on a loopback, private or link-local
address that the operator's ``egress_allow`` does not list: :mod:`coprocessor.egress`) is JOB_FAILED with a
reason naming the problem, never the prompt, the response body or the key; a malformed input is INVALID_INPUT.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from eth_abi import encode

from coprocessor.egress import EgressRefusedError, guarded_client
from coprocessor.jobs.base import InvalidJobInputError, Job, JobContext, JobError
from coprocessor.jobs.http_json import check_url
from verifier.hashing import keccak256

API_KEY_SECRET = "apiKey"
MAX_PROMPT_CHARS = 32_000
MAX_MODEL_CHARS = 128
MAX_TOKENS_LIMIT = 32_768
MAX_TEMPERATURE_MILLI = 2_000
UPSTREAM_TIMEOUT_SECONDS = 55.0
JOB_TIMEOUT_SECONDS = 60.0


def prompt_hash(system: str, prompt: str, max_tokens: int, temperature_milli: int, seed: int) -> bytes:
    """``keccak256(abi.encode(system, prompt, maxTokens, temperatureMilli, seed))``."""
    return keccak256(
        encode(
            ["string", "string", "uint32", "uint16", "uint64"], [system, prompt, max_tokens, temperature_milli, seed]
        )
    )


def _check(endpoint: str, model: str, prompt: str, system: str, max_tokens: int, temperature_milli: int) -> httpx.URL:
    base = check_url(endpoint)
    if not model or len(model) > MAX_MODEL_CHARS:
        raise InvalidJobInputError(f"model must be 1-{MAX_MODEL_CHARS} characters")
    if not prompt:
        raise InvalidJobInputError("prompt is empty")
    if len(prompt) + len(system) > MAX_PROMPT_CHARS:
        raise InvalidJobInputError(f"system + prompt are longer than {MAX_PROMPT_CHARS} characters")
    if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise InvalidJobInputError(f"maxTokens must be 1..{MAX_TOKENS_LIMIT}")
    if temperature_milli > MAX_TEMPERATURE_MILLI:
        raise InvalidJobInputError(f"temperatureMilli must be 0..{MAX_TEMPERATURE_MILLI} (0.0 to 2.0)")
    return base.copy_with(path=base.path.rstrip("/") + "/chat/completions")


def _complete(url: httpx.URL, body: dict[str, Any], api_key: str | None, context: JobContext) -> str:
    budget = min(UPSTREAM_TIMEOUT_SECONDS, context.remaining())
    if budget <= 0:
        raise JobError("no time left in the job budget for the model call")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    limit = context.http_max_response_bytes
    try:
        with (
            guarded_client(context.egress, timeout=httpx.Timeout(budget), follow_redirects=False) as client,
            client.stream("POST", url, headers=headers, content=json.dumps(body).encode()) as response,
        ):
            if not response.is_success:
                raise JobError(f"model endpoint returned HTTP {response.status_code}")
            raw = bytearray()
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > limit:
                    raise JobError(f"model endpoint answer is larger than {limit} bytes")
    except EgressRefusedError as exc:
        raise JobError(exc.reason) from None
    except httpx.TimeoutException as exc:
        raise JobError(f"model endpoint timed out after {budget:.3g} s") from exc
    except httpx.HTTPError as exc:
        raise JobError(f"model endpoint request failed ({type(exc).__name__})") from exc
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise JobError("model endpoint answer is not a chat completion (choices[0].message.content)") from exc
    if not isinstance(content, str):
        raise JobError("model endpoint answer is not a chat completion (content is not a string)")
    return content


def _handle(context: JobContext, args: tuple[str, str, str, str, int, int, int]) -> tuple[Any, ...]:
    endpoint, model, system, prompt, max_tokens, temperature_milli, seed = args
    url = _check(endpoint, model, prompt, system, max_tokens, temperature_milli)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature_milli / 1000,
        "seed": seed,
    }
    response = _complete(url, body, context.secrets.get(API_KEY_SECRET), context)
    return (
        keccak256(endpoint.encode()),
        model,
        prompt_hash(system, prompt, max_tokens, temperature_milli, seed),
        keccak256(response.encode()),
        response,
    )


LLM_CHAT_JOB = Job(
    name="llm.chat",
    version=1,
    input_types=("string", "string", "string", "string", "uint32", "uint16", "uint64"),
    output_types=("bytes32", "string", "bytes32", "bytes32", "string"),
    handler=_handle,
    description=(
        "One chat completion from an OpenAI-compatible endpoint, the API key from the request's sealed secret "
        "set (apiKey); the result commits to the endpoint, model, prompt and response."
    ),
    timeout_seconds=JOB_TIMEOUT_SECONDS,
)

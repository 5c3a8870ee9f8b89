"""A tiny JSON path language for picking one value out of a JSON document.

Syntax::

    ""  or  "$"              the whole document
    a.b.c                    object keys (a leading "$." is allowed: "$.a.b.c")
    a.b[0].c                 [N] indexes an array (N a non-negative decimal integer)
    a["key.with.dots"]       ["..."] is an object key that may contain any character but '"'
    [2].price                a path may start with an index

A bare key is one or more characters other than ``.``, ``[``, ``]`` and ``"``; ``a.0`` is the object key
``"0"``, not an array index. Whitespace is part of keys, not ignored.
"""

from __future__ import annotations

from typing import Any

from coprocessor.jobs.base import InvalidJobInputError, JobError

Segment = str | int

MAX_PATH_LENGTH = 1024
_BARE_KEY_STOP = '.[]"'


def parse_path(path: str) -> list[Segment]:
    """The segments of ``path``; raises ``InvalidJobInputError`` (naming the character position) if malformed."""
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidJobInputError(f"jsonPath is longer than {MAX_PATH_LENGTH} characters")
    if path in ("", "$"):
        return []
    segments: list[Segment] = []
    if path.startswith("$"):
        i = 1
    elif path.startswith("["):
        i = 0
    else:
        i = _bare_key(path, 0, segments)  # a path may start with a bare key
    while i < len(path):
        if path[i] == ".":
            i = _bare_key(path, i + 1, segments)
        elif path[i] == "[":
            i = _bracket(path, i, segments)
        else:
            raise _malformed(i, "expected '.' or '['")
    return segments


def _bare_key(path: str, start: int, segments: list[Segment]) -> int:
    end = start
    while end < len(path) and path[end] not in _BARE_KEY_STOP:
        end += 1
    if end == start:
        raise _malformed(start, "expected a key")
    segments.append(path[start:end])
    return end


def _bracket(path: str, start: int, segments: list[Segment]) -> int:
    close = path.find("]", start)
    if close < 0:
        raise _malformed(start, "'[' without a closing ']'")
    inner = path[start + 1 : close]
    if len(inner) >= 2 and inner[0] == '"' and inner[-1] == '"' and '"' not in inner[1:-1]:
        segments.append(inner[1:-1])
    elif inner.isascii() and inner.isdigit():
        segments.append(int(inner))
    else:
        raise _malformed(start + 1, 'expected an array index or a "quoted key" inside [...]')
    return close + 1


def _malformed(position: int, expected: str) -> InvalidJobInputError:
    return InvalidJobInputError(f"jsonPath is malformed at character {position}: {expected}")


def json_type_name(value: Any) -> str:
    """The JSON type of a parsed value: object, array, string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "number"


def extract(document: Any, segments: list[Segment]) -> Any:
    """The value at ``segments`` in a parsed JSON document; raises ``JobError`` if it is not there.

    Error reasons name the segment's position (1-based) and the JSON types, never keys or values.
    """
    current = document
    for position, segment in enumerate(segments, start=1):
        if isinstance(segment, int):
            if not isinstance(current, list):
                raise JobError(f"JSON path segment {position}: expected an array, found {json_type_name(current)}")
            if segment >= len(current):
                raise JobError(f"JSON path segment {position}: array index out of range (length {len(current)})")
            current = current[segment]
        else:
            if not isinstance(current, dict):
                raise JobError(f"JSON path segment {position}: expected an object, found {json_type_name(current)}")
            if segment not in current:
                raise JobError(f"JSON path segment {position}: key not found")
            current = current[segment]
    return current

"""Convert a JSON value to a Solidity value of a named type, for ``http.json``.

- ``uint256`` / ``int256``: a JSON number or a numeric string (``-12.5``, ``"3e2"``; no NaN or Infinity)
  is multiplied by ``10**decimals`` exactly (``decimal.Decimal``, no floating point), then any fractional
  part left is truncated toward zero (``1.239`` with decimals 2 is 123, ``-1.239`` is -123). The integer
  must fit the type (``uint256`` rejects negatives).
- ``bool``: a JSON ``true`` or ``false``.
- ``string``: a JSON string, as is.
- ``bytes32``: a JSON string of ``0x`` and exactly 64 hex digits.

``decimals`` only applies to the numeric types. JSON numbers must be parsed with ``parse_float=Decimal``
so that fractions are exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from coprocessor.jobs.base import InvalidJobInputError, JobError
from coprocessor.jobs.jsonpath import json_type_name

UINT256_MAX = 2**256 - 1
INT256_MIN = -(2**255)
INT256_MAX = 2**255 - 1
_MAX_DIGITS = 80  # 2**256 has 78 decimal digits
_NUMERIC_STRING = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,6})?")
_BYTES32 = re.compile(r"0[xX][0-9a-fA-F]{64}")


def to_decimal(value: Any) -> Decimal:
    """A finite Decimal from a JSON number or numeric string; raises ``JobError`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise JobError(f"expected a number or a numeric string, found {json_type_name(value)}")
    if isinstance(value, str):
        if len(value) > 1024 or not _NUMERIC_STRING.fullmatch(value):
            raise JobError("expected a number or a numeric string, found a non-numeric string")
        value = Decimal(value)
    number = Decimal(value)
    if not number.is_finite():
        raise JobError("expected a finite number")
    return number


def scale_to_int(number: Decimal, decimals: int) -> int:
    """``number * 10**decimals`` truncated toward zero, computed exactly; ``JobError`` if over 80 digits."""
    if number.is_zero():
        return 0
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite numbers have an integer exponent
    exponent += decimals
    integer_digits = len(digits) + exponent
    if integer_digits <= 0:
        return 0  # |number * 10**decimals| < 1
    if integer_digits > _MAX_DIGITS:
        raise JobError("number is out of range after scaling")
    if exponent >= 0:
        magnitude = int("".join(map(str, digits))) * 10**exponent
    else:
        magnitude = int("".join(map(str, digits[:integer_digits])))
    return -magnitude if sign else magnitude


def _uint256(value: Any, decimals: int) -> int:
    result = scale_to_int(to_decimal(value), decimals)
    if not 0 <= result <= UINT256_MAX:
        raise JobError("value does not fit uint256" + (" (negative)" if result < 0 else ""))
    return result


def _int256(value: Any, decimals: int) -> int:
    result = scale_to_int(to_decimal(value), decimals)
    if not INT256_MIN <= result <= INT256_MAX:
        raise JobError("value does not fit int256")
    return result


def _bool(value: Any, _decimals: int) -> bool:
    if not isinstance(value, bool):
        raise JobError(f"expected a boolean, found {json_type_name(value)}")
    return value


def _string(value: Any, _decimals: int) -> str:
    if not isinstance(value, str):
        raise JobError(f"expected a string, found {json_type_name(value)}")
    return value


def _bytes32(value: Any, _decimals: int) -> bytes:
    if not isinstance(value, str) or not _BYTES32.fullmatch(value):
        raise JobError(f"expected a string of 0x and 64 hex digits, found {json_type_name(value)}")
    return bytes.fromhex(value[2:])


CONVERTERS: dict[str, Callable[[Any, int], Any]] = {
    "uint256": _uint256,
    "int256": _int256,
    "bool": _bool,
    "string": _string,
    "bytes32": _bytes32,
}
"""The result types ``http.json`` supports, each a converter ``(jsonValue, decimals) -> Solidity value``."""


def check_result_type(result_type: str) -> None:
    """Raise ``InvalidJobInputError`` unless ``result_type`` is a supported type name."""
    if result_type not in CONVERTERS:
        raise InvalidJobInputError(f"resultType must be one of {', '.join(CONVERTERS)}")


def convert(value: Any, result_type: str, decimals: int) -> Any:
    """Convert a parsed JSON value to ``result_type`` (see the module docstring)."""
    check_result_type(result_type)
    return CONVERTERS[result_type](value, decimals)

"""User ids: exact 64-bit signed integers, the one rule the pipeline, the CLI and the artifacts share.

Artifacts store ``user_id`` as int64. An id outside that range, or one that
went through a float (which cannot hold every integer beyond 2**53), is
refused where it enters rekko instead of being rounded or wrapped around
into somebody else's id. Kept free of pandas so the CLI's argument parsing
stays cheap.
"""

from __future__ import annotations

import decimal
import re

import numpy as np

from rekko.exceptions import quote

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: From here on float64 no longer holds every integer: 2**53 and 2**53 + 1 are the same float.
FLOAT_EXACT_LIMIT = 2**53
#: An id written as text: ASCII digits with an optional sign (``int()`` would also take ``1_000`` and ``١٢``).
INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


#: Digits of the longest int64 (``9223372036854775807``): a longer id text is out of range before any ``int()``.
INT64_DIGITS = 19


def _out_of_range(shown: str) -> str:
    return f"user id out of range: {shown} is not a 64-bit integer ({INT64_MIN}..{INT64_MAX})"


def check_range(number: int) -> int | str:
    """``number`` if int64 holds it, else the message saying it is out of range.

    A huge number is described by its size: Python refuses to print an int of more
    than 4,300 digits (``sys.set_int_max_str_digits``), and no message should try.
    """
    if INT64_MIN <= number <= INT64_MAX:
        return number
    if number.bit_length() > 600:  # about 180 digits: more than a message shows anyway
        return _out_of_range(f"a number of {number.bit_length():,} bits")
    return _out_of_range(quote(number))


def from_float(value: float) -> int | str:
    """An id that travelled as a float: the integer, or why it is not one.

    Beyond 2**53 a float may already be a neighbouring id rounded (2**53 + 1
    reads back as 2**53), so such ids are refused rather than guessed.
    """
    if not np.isfinite(value) or value != np.floor(value):
        return f"expected integer user ids, got {quote(value)}"
    if abs(value) >= FLOAT_EXACT_LIMIT:
        return (f"user id {value:.0f} arrived as a floating-point number, which cannot tell ids beyond 2**53 "
                "apart (2**53 and 2**53+1 are one float): store user ids as integers")
    return int(value)


def parse_user_id(value: object) -> int | str:
    """One raw user id (a cell of any type) as an exact Python int, or the reason it is not a valid id."""
    if isinstance(value, (bool, np.bool_)):
        return f"expected integer user ids, got {quote(value)}"
    if isinstance(value, (int, np.integer)):
        return check_range(int(value))
    if isinstance(value, decimal.Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return f"expected integer user ids, got {quote(value)}"
        return check_range(int(value))
    if isinstance(value, (float, np.floating)):
        return from_float(float(value))
    text = str(value).strip()
    if INTEGER_TEXT.fullmatch(text):
        if len(text.lstrip("+-").lstrip("0")) > INT64_DIGITS:  # never int() a 5,000,000-digit cell
            return _out_of_range(quote(text))
        return check_range(int(text))
    try:
        return from_float(float(text))
    except ValueError:
        return f"expected numbers, got {quote(value)}"

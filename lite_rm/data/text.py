"""Validating text once, where it is read: JSON parsing that never escapes :class:`DataError`, the
check that every string is valid Unicode (so tokenizers never see a lone surrogate), and
:func:`check_text`, the check of every text a scorer takes (a string or chat messages).

Python's JSON parser accepts input that later code cannot use: a lone surrogate (``"\\ud800"`` is valid
JSON but not encodable text; tokenizers fail on it), integers longer than Python's 4,300-digit limit
(``ValueError``), and nesting deeper than the recursion limit (``RecursionError``). Each becomes a
:class:`DataError` naming the file and line here.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from lite_rm.data.formats import render_messages
from lite_rm.data.records import DataError

# A \uD800-\uDFFF escape: the only way JSON text can carry a surrogate; records without one need no walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def may_hold_surrogates(data: bytes) -> bool:
    """Whether JSON text holds a surrogate escape (then :func:`text_error` must check its records)."""
    return _SURROGATE_ESCAPE.search(data) is not None


def bad_text(text: str, origin: str = "json") -> tuple[str, str] | None:
    """(what is wrong, reason) for a string that is not encodable as UTF-8 (a lone surrogate), else None.

    ``origin="csv"``: surrogates in U+DC80..U+DCFF stand for bytes that were not UTF-8.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        if origin == "csv" and "\udc80" <= char <= "\udcff":
            # A byte that was not UTF-8, kept as a surrogate by the reader's "surrogateescape" decoding.
            byte = bytes([ord(char) - 0xDC00])
            return f"bytes that are not UTF-8 ({byte!r} at character {err.start + 1}); expected UTF-8 text", "not UTF-8"
        return (f"a lone surrogate {char!r} at character {err.start + 1}; expected valid Unicode text "
                "(a \\ud800-\\udfff escape must be one half of a pair)", "invalid text")
    return None


def text_error(record: dict[str, Any], loc: str, origin: str = "json") -> DataError | None:
    """The first string in ``record`` (field names included) that is not valid Unicode, as a
    :class:`DataError` naming the field; None when all are valid. Walks without recursion, so that any
    depth the parser accepted is fine."""
    stack: list[tuple[Any, str]] = [(record, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            bad = bad_text(value, origin)
            if bad:
                return DataError(loc, f"field {path!r}: {bad[0]}", bad[1])
        elif isinstance(value, dict):
            for key, item in value.items():
                bad = bad_text(key, origin) if isinstance(key, str) else None
                if bad:
                    return DataError(loc, f"a field name: {bad[0]}", bad[1])
                stack.append((item, f"{path}.{key}" if path else str(key)))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


def check_text(value: Any, name: str, loc: str = "") -> str:
    """``value`` as text: a string, or chat messages rendered as in training. The one check of the texts a
    Scorer (:mod:`lite_rm.scoring.scorer`), ``lite-rm score`` and ``lite-rm serve`` take.

    Args:
        value: a string or a list of ``{"role", "content"}`` messages.
        name: the argument or field, named in errors.
        loc: where a file's record came from (``FILE line N``); when given, every problem is a DataError
            naming it, so that a file job can skip the record.

    Raises:
        TypeError: neither a string nor a list (without ``loc``).
        DataError: malformed messages, or with ``loc`` any problem (a DataError is a ValueError).
        ValueError: text that is not valid Unicode (a lone surrogate).
    """
    if not loc and not isinstance(value, (str, list)):
        raise TypeError(f"{name}: expected a string or a list of {{'role', 'content'}} messages, "
                        f"found {type(value).__name__}")
    text = render_messages(value, loc, name)  # a DataError names what is wrong
    bad = bad_text(text)
    if bad:  # tokenizers would fail on it and lose the whole batch
        raise DataError(loc, f"field {name!r}: {bad[0]}", bad[1]) if loc else ValueError(f"{name}: {bad[0]}")
    return text


def _too_long_number(err: ValueError) -> str:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
    return (f"invalid JSON: a number longer than Python's limit of {limit} digits ({err}); "
            "expected numbers of ordinary size")


_TOO_DEEP = "invalid JSON: nested deeper than the JSON parser allows; expected records of plain fields"


def parse_json_line(raw: bytes, loc: str) -> dict[str, Any] | DataError:
    """One JSON-lines record: the object, or a :class:`DataError` saying why it is not usable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return DataError(
            loc, f"bytes that are not UTF-8 ({raw[err.start:err.start + 4]!r} at column {err.start + 1}); "
            "expected UTF-8 text", "not UTF-8")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return DataError(loc, f"invalid JSON at column {err.colno}: {err.msg}", "invalid JSON")
    except RecursionError:
        return DataError(loc, _TOO_DEEP, "invalid JSON")
    except ValueError as err:  # an integer over Python's digit limit
        return DataError(loc, _too_long_number(err), "invalid JSON")
    if not isinstance(record, dict):
        return DataError(loc, f"expected a JSON object, found {type(record).__name__}", "not an object")
    return (text_error(record, loc) or record) if may_hold_surrogates(raw) else record


def _line_of(text: str | bytes, offset: int) -> int:
    newline: Any = b"\n" if isinstance(text, bytes) else "\n"
    return text.count(newline, 0, offset) + 1


def parse_json_text(data: bytes, name: str) -> Any:
    """A whole JSON document (UTF-8, with or without a byte order mark). Returns None when the text
    holds several top-level objects (really JSON lines).

    Raises:
        DataError: not UTF-8, or not valid JSON; the message names the line.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{name} line {_line_of(data, err.start)}",
            f"bytes that are not UTF-8 ({data[err.start:err.start + 4]!r} at byte {err.start}); "
            "expected a UTF-8 text file", "not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            return None
        raise DataError(f"{name} line {err.lineno}", f"invalid JSON at column {err.colno}: {err.msg}",
                        "invalid JSON") from None
    except RecursionError:
        raise DataError(name, _TOO_DEEP, "invalid JSON") from None
    except ValueError as err:
        digits = re.search(r"\d{4000,}", text)
        where = f"{name} line {_line_of(text, digits.start())}" if digits else name
        raise DataError(where, _too_long_number(err), "invalid JSON") from None

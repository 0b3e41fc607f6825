"""Find the line of a field inside a JSON document, for error messages only (never on a hot path).

The standard library's ``json`` module does not report positions of values, so this is a small scanner of our own
that walks the text along a field path (``("facts", 3, "id")``) and returns the 1-based line where that value
starts, or the deepest ancestor it could reach.
"""

from __future__ import annotations

import json
import re

_WS = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()


def _skip_value(text: str, i: int) -> int:
    """Index just past the JSON value starting at i."""
    _, end = _decoder.raw_decode(text, i)
    return end


def _find_in_object(text: str, i: int, key: str) -> int | None:
    i = _skip_ws(text, i + 1)
    while i < len(text) and text[i] != "}":
        k, i = _decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        i = _skip_ws(text, i + 1)  # past ':'
        if k == key:
            return i
        i = _skip_ws(text, _skip_value(text, i))
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
    return None


def _find_in_array(text: str, i: int, index: int) -> int | None:
    i = _skip_ws(text, i + 1)
    n = 0
    while i < len(text) and text[i] != "]":
        if n == index:
            return i
        i = _skip_ws(text, _skip_value(text, i))
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
        n += 1
    return None


def line_of(text: str, path: tuple[str | int, ...], start: int = 0) -> int:
    """1-based line of the value at ``path`` in the JSON value starting at ``start`` (best effort)."""
    i = _skip_ws(text, start)
    try:
        for part in path:
            if i >= len(text):
                break
            if text[i] == "{" and isinstance(part, str):
                nxt = _find_in_object(text, i, part)
            elif text[i] == "[" and isinstance(part, int):
                nxt = _find_in_array(text, i, part)
            else:
                nxt = None
            if nxt is None:
                break
            i = nxt
    except (json.JSONDecodeError, IndexError):
        pass
    return text.count("\n", 0, i) + 1


def list_item_start(text: str, index: int) -> int:
    """Offset where item ``index`` of a top-level JSON array starts (0 when not found)."""
    try:
        pos = _find_in_array(text, _skip_ws(text, 0), index)
    except (json.JSONDecodeError, IndexError):
        pos = None
    return pos if pos is not None else 0

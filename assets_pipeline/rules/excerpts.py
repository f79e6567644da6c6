"""Short, bounded descriptions of untrusted values for error messages.

A value from a Polygon body or a symbols file can be huge or deeply nested (a 400-digit number, a
YAML alias bomb); an error message quotes at most an excerpt of it, built with bounded work.
"""

from __future__ import annotations

import base64
import reprlib
import string
from typing import Any
from urllib.parse import quote

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def excerpt(value: Any) -> str:
    """`repr(value)`, cut short (at most about 100 characters, whatever the value)."""
    return _REPR.repr(value)[:100]


#: C0 controls (and DEL) a stored or printed text must not carry; tab and newline are kept.
_CONTROLS = {c: "?" for c in (*range(0x20), 0x7F) if c not in (0x09, 0x0A)}
#: How much of an upstream's own words an error message quotes.
MAX_QUOTED = 300


def safe_text(text: str) -> str:
    """`text` that any database, log or terminal takes: lone surrogates and C0 controls (NUL
    among them; tab and newline kept) each become `?`."""
    return text.encode("utf-8", "replace").decode("utf-8").translate(_CONTROLS)


def clip(text: str, limit: int = MAX_QUOTED) -> str:
    """`safe_text` of at most `limit` characters of `text`, marked with `...` when cut (the
    work is bounded by `limit`, not by the length of `text`)."""
    if len(text) <= limit:
        return safe_text(text)
    return safe_text(text[: max(limit - 3, 0)]) + "..."


#: A secret echoed back cut short is still hidden down to this many characters of it.
SECRET_PIECE = 8
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def without_secret(text: str, secret: str, mark: str = "***") -> str:
    """`text` with `secret` replaced by `mark` however it was echoed: in any case, URL-encoded,
    or any part of it of `SECRET_PIECE` characters or more (a server may cut it short)."""
    if not secret or not text:
        return text
    lowered = text.translate(_ASCII_LOWER)  # the same length as `text`, unlike `str.lower`
    size = min(SECRET_PIECE, len(secret))
    pieces: set[str] = set()
    for form in _echoes(secret):
        form = form.translate(_ASCII_LOWER)
        pieces.update(form[i : i + size] for i in range(len(form) - size + 1))
    spans = []
    for piece in pieces:
        start = lowered.find(piece)
        while start >= 0:
            spans.append((start, start + size))
            start = lowered.find(piece, start + 1)
    return _masked(text, sorted(spans), mark) if spans else text


def _echoes(secret: str) -> set[str]:
    """The forms a server may echo a secret in: as it is, URL-encoded (the unsafe characters or
    every one), in hex, and in base64 (standard and URL-safe, at each of the three alignments it
    can have inside a longer encoded text: the characters that depend on its neighbours are
    left out)."""
    raw = secret.encode("utf-8", "replace")
    forms = {secret, quote(secret, safe=""), "".join(f"%{b:02x}" for b in raw), raw.hex()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            encoded = encode(b"\0" * shift + raw).decode("ascii")
            start = 4 if shift else 0
            forms.add(encoded[start : len(encoded) - 4])
    return {form for form in forms if form}


def _masked(text: str, spans: list[tuple[int, int]], mark: str) -> str:
    """`text` with each run of overlapping or touching `spans` (sorted) replaced by `mark`."""
    out: list[str] = []
    kept = 0
    for start, end in spans:
        if start > kept:
            out += (text[kept:start], mark)
        elif not out:
            out.append(mark)
        kept = max(kept, end)
    out.append(text[kept:])
    return "".join(out)

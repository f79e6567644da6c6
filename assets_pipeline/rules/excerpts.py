"""Short, bounded descriptions of untrusted values for error messages.

A value from a Polygon body or a symbols file can be huge or deeply nested (a 400-digit number, a
YAML alias bomb); an error message quotes at most an excerpt of it, built with bounded work.
"""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def excerpt(value: Any) -> str:
    """`repr(value)`, cut short (at most about 100 characters, whatever the value)."""
    return _REPR.repr(value)[:100]

"""Poison records: data a real TMS may hold and a warehouse cannot store (issue 13, item 5).

``SimulatorConfig(poison={"orders": ("nul", "surrogate", "yesterday")})`` plants one such record
per kind among a resource's records, chosen by the seed. Each keeps its place in the API's
order (the dataset orders by its own timestamp), as a row with a bad column would in a
database-backed API. Kinds:

- ``nul``: a string holding ``\\u0000`` (PostgreSQL stores it in neither jsonb nor text);
- ``surrogate``: a lone UTF-16 surrogate escape ``\\ud800`` (not Unicode text);
- ``no_updated_at``, ``null_updated_at``, ``number_updated_at``, ``yesterday``: an
  ``updated_at`` missing, null, a number (epoch seconds) or a word.
"""

from __future__ import annotations

import json
from typing import Any

POISON_KINDS = (
    "nul",
    "surrogate",
    "no_updated_at",
    "null_updated_at",
    "number_updated_at",
    "yesterday",
)


def poisoned(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """A copy of ``record`` spoiled the ``kind`` way."""
    spoiled = dict(record)
    if kind == "nul":
        spoiled["poison"] = "before\x00after"
    elif kind == "surrogate":
        spoiled["poison"] = "half a pair: \ud800"
    elif kind == "no_updated_at":
        del spoiled["updated_at"]
    elif kind == "null_updated_at":
        spoiled["updated_at"] = None
    elif kind == "number_updated_at":
        spoiled["updated_at"] = 1_700_000_000
    elif kind == "yesterday":
        spoiled["updated_at"] = "yesterday"
    else:
        raise ValueError(f"poison kind must be one of {POISON_KINDS}, not {kind!r}")
    return spoiled


def encode_poisoned(record: dict[str, Any]) -> bytes:
    """JSON that msgspec refuses to write (a lone surrogate) comes from Python's json, which
    escapes it: exactly the text such an API would send."""
    return json.dumps(record, separators=(",", ":")).encode()

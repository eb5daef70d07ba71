"""Readers of the JSON text columns (tags, ML counters, reported configuration) that cannot fail.

Writers validate what they store, but a read path must not trust that: a row written by an older
server, by hand, or by a bug would otherwise answer 500 on every poll and page that touches it. A value
that is not the expected shape reads as empty and is logged once per distinct value.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=4096)
def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _bad(column: str, text: object) -> None:
    log.warning("ignoring a stored %s that is not the expected shape: %.80r", column, text)


def tags(text: object) -> list[str]:
    """A device's tags column: a JSON list of strings; anything else reads as no tags."""
    value = _loads(text) if isinstance(text, str) else None
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    _bad("tags", text)
    return []


def counts(text: object, column: str = "counts") -> dict[str, int] | None:
    """A JSON object of name -> integer (ML counters, reported configuration), None if absent or bad."""
    if text is None:
        return None
    value = _loads(text) if isinstance(text, str) else None
    if isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        return dict(value)
    _bad(column, text)
    return None


def properties(text: object, column: str = "reported_config") -> dict[str, int | str] | None:
    """A JSON object of name -> integer or string (a reported configuration), None if absent or bad."""
    if text is None:
        return None
    value = _loads(text) if isinstance(text, str) else None
    if isinstance(value, dict) and all(type(v) in (int, str) for v in value.values()):
        return dict(value)
    _bad(column, text)
    return None


def dump_tags(values: list[str]) -> str:
    return json.dumps(sorted(set(values)))

"""Device tags are a JSON list in one column; a tag filter is a LIKE on the quoted tag. Tags are
validated (core.types.TAG) and the LIKE escapes `_`, so a filter never matches by wildcard."""

from __future__ import annotations

from otaml.models import Device


def has_tag(tag: str):  # type: ignore[no-untyped-def]
    return Device.tags.contains(f'"{tag}"', autoescape=True)  # type: ignore[attr-defined]

"""Small HTTP helpers shared by the ASGI fast path and the routes."""


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this (strong) ETag."""
    return if_none_match is not None and etag in (t.strip() for t in if_none_match.split(","))

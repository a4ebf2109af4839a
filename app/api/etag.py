"""ETags are the product version: `ETag: "<version>"`."""

from __future__ import annotations

import re

_ENTITY_TAG = re.compile(r'\s*(?:W/)?"(\d{1,10})"\s*')


NO_VERSION = 0  # versions start at 1


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version(header: str | None) -> int | None:
    """The version an If-Match demands; None when absent or `*` (any current version)."""
    if header is None or header.strip() == "*":
        return None
    match = _ENTITY_TAG.fullmatch(header.split(",", 1)[0])
    # A tag this service never issued names no version: it is stale for every product, and the
    # product's lookup still answers 404 first.
    return int(match.group(1)) if match is not None else NO_VERSION


def none_match(header: str | None, version: int) -> bool:
    """True when If-None-Match names the current version (or is `*`): answer 304."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(
        (m := _ENTITY_TAG.fullmatch(part)) is not None and int(m.group(1)) == version
        for part in header.split(",")
    )

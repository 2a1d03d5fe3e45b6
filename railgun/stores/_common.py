"""
What both version stores check and report the same way.
"""

from __future__ import annotations

from ._ratelimit import RateLimitedLog
from .interfaces import StoreStats


def checkBytes(name: str, value: object) -> None:
    """
    @raise TypeError: unless C{value} is L{bytes} (a caller's bug).
    """
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def refuseOversize(
    stats: StoreStats, warnings: RateLimitedLog, length: int, limit: int
) -> None:
    """
    Count a value refused for its size and warn about it (rate-limited).

    @param length: the value's length.
    @param limit: the largest length the store takes.
    """
    stats.rejected += 1
    warnings.warn(
        "oversize",
        "Version store refused a value of {length} bytes (limit "
        "{limit}); {suppressed} more refused since the last warning",
        length=length,
        limit=limit,
    )

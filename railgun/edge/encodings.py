"""
The edge's recent client encodings: a rebuilt body compressed for clients
(gzip, br, zstd) is kept by version digest and coding, so a page served
unchanged to many clients is compressed once per version, not once per
request.
"""

from __future__ import annotations

from attrs import define, field

from railgun._lru import SizedLRU


@define
class ClientEncodings:
    """
    Compressed bodies by C{(digest, coding)}, least recently used dropped
    first, bounded in count and bytes.

    A version's digest names its identity body, and the encoders are
    deterministic (gzip without a timestamp), so the bytes kept are exactly
    what compressing the body again would give.

    @ivar maxItems: encodings kept at most.
    @ivar maxBytes: encoded bytes kept at most; a larger encoding is not
        kept.
    """

    maxItems: int = 1024
    maxBytes: int = 32 * 1024 * 1024
    _kept: SizedLRU[tuple[bytes, bytes], bytes] = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._kept = SizedLRU(self.maxItems, self.maxBytes, len)

    @property
    def size(self) -> int:
        """
        Encoded bytes kept now.
        """
        return self._kept.size

    def get(self, digest: bytes, coding: bytes) -> bytes | None:
        """
        @return: the body named C{digest} in C{coding}, or L{None}.
        """
        return self._kept.get((digest, coding))

    def put(self, digest: bytes, coding: bytes, encoded: bytes) -> None:
        """
        Keep C{encoded}, the body named C{digest} in C{coding}.
        """
        self._kept.put((digest, coding), encoded)

"""
The edge's recent client encodings: a rebuilt body compressed for clients
(gzip, br, zstd) is kept by version digest and coding, so a page served
unchanged to many clients is compressed once per version, not once per
request.
"""

from __future__ import annotations

from collections import OrderedDict

from attrs import define, field


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
    _items: OrderedDict[tuple[bytes, bytes], bytes] = field(factory=OrderedDict, init=False)
    _bytes: int = field(default=0, init=False)

    @property
    def size(self) -> int:
        """
        Encoded bytes kept now.
        """
        return self._bytes

    def get(self, digest: bytes, coding: bytes) -> bytes | None:
        """
        @return: the body named C{digest} in C{coding}, or L{None}.
        """
        encoded = self._items.get((digest, coding))
        if encoded is not None:
            self._items.move_to_end((digest, coding))
        return encoded

    def put(self, digest: bytes, coding: bytes, encoded: bytes) -> None:
        """
        Keep C{encoded}, the body named C{digest} in C{coding}.
        """
        if len(encoded) > self.maxBytes:
            return
        key = (digest, coding)
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[key] = encoded
        self._bytes += len(encoded)
        while len(self._items) > self.maxItems or self._bytes > self.maxBytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)

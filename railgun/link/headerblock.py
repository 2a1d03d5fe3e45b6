"""
HPACK (RFC 7541) header blocks for the link, one encoder and one decoder per
link direction.

Headers are C{list[tuple[bytes, bytes]]} with lowercase names.  The encoder
and decoder keep HPACK's dynamic table, so blocks must be decoded in exactly
the order they were encoded: the link encodes a block only when it puts the
frame on the wire, and decodes every received block, even one for a stream
it then refuses.

This is our own implementation of the format, not the pure-Python C{hpack}
package's, because that one cost the link more CPU than everything else
together (linear table searches, Huffman coding bit by bit, per-header
objects and debug logging).  Here the encoder finds entries with two dict
lookups and never Huffman-codes (a few bytes more per block, measured in
C{bench/linkperf.py}); the decoder walks the block once.  The wire format
is plain HPACK with the default 4096-byte table, so either side
interoperates with any HPACK implementation (the tests check both ways
against C{hpack}); the decoder accepts Huffman-coded strings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import chain

from hpack import HPACKError, NeverIndexedHeaderTuple
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from .errors import ErrorCode, ProtocolError

Header = tuple[bytes, bytes]

DEFAULT_MAX_HEADER_LIST_SIZE = 256 * 1024
# RFC 7541's default, which the link never changes: staying at it keeps the
# wire compatible with any HPACK peer.
TABLE_SIZE = 4096
# Entries bigger than this are sent without indexing: one would evict
# most of the table for a value that may never repeat.
_MAX_INDEXED_ENTRY = TABLE_SIZE // 2
_ENTRY_OVERHEAD = 32

# Worst case bytes our encoder adds around one header, sent as a literal
# with a literal name: a type byte plus two length prefixes of at most 5
# bytes each for lengths below 2**28.
_PER_HEADER_OVERHEAD = 11
# Room for dynamic table size updates at the start of a block.
_PER_BLOCK_OVERHEAD = 16
# Longest integer accepted: 2**28 and beyond is no length or index a block
# of at most 16 MiB can mean.
_MAX_INT_BYTES = 4

_STATIC: tuple[Header, ...] = tuple(HeaderTable.STATIC_TABLE)
_STATIC_COUNT = len(_STATIC)  # 61
# The static table with HPACK sizes and a placeholder at 0, so that an index
# is a subscript.
_STATIC_SIZED: tuple[tuple[Header, int], ...] = tuple(
    (entry, len(entry[0]) + len(entry[1]) + 32) for entry in ((b"", b""), *_STATIC)
)
_STATIC_PAIRS: dict[Header, int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, _entry in enumerate(_STATIC, 1):
    _STATIC_PAIRS.setdefault(_entry, _index)
    _STATIC_NAMES.setdefault(_entry[0], _index)
del _index, _entry

# "Indexed header field" representations of the indexes below 127, ready.
_INDEXED = [bytes([0x80 | i]) for i in range(127)]


def _integer(value: int, prefixBits: int, flags: int) -> bytes:
    """
    An HPACK integer (RFC 7541 section 5.1) with C{flags} in the first byte.
    """
    limit = (1 << prefixBits) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """
    An HPACK string literal without Huffman coding.
    """
    length = len(data)
    if length < 127:
        return bytes([length]) + data
    return _integer(length, 7, 0) + data


def maxEncodedSize(headers: Iterable[Header]) -> int:
    """
    An upper bound of the size of the block our encoder makes for
    C{headers}, whatever its table holds: every header as a literal with a
    literal name.

    @param headers: the header list, names and values C{bytes}.
    @return: a byte count that the encoded block never exceeds.
    @raise TypeError: when a name or value is not bytes-like.
    """
    headers = list(headers)
    return (
        _PER_BLOCK_OVERHEAD
        + _PER_HEADER_OVERHEAD * len(headers)
        + len(b"".join(chain.from_iterable(headers)))
    )


def blockFits(headers: list[Header], limit: int) -> bool:
    """
    Whether the block for C{headers} surely fits in C{limit} bytes.

    The link checks this against the peer's limits before it accepts headers
    to send: once a block is encoded the dynamic table has changed, so a
    block that turned out too big could not simply be dropped.  Our encoder
    never Huffman-codes, so the bound is exact arithmetic over the lengths.

    @param headers: the header list.
    @param limit: the largest block allowed.
    @return: C{True} when the encoded block cannot exceed C{limit}.
    @raise TypeError: when a name or value is not bytes-like.
    """
    return maxEncodedSize(headers) <= limit


class HeaderBlockEncoder:
    """
    Encode header lists into HPACK blocks for one direction of a link.

    Every header is sent as a reference when the table (static or dynamic)
    holds it; otherwise as a literal (its name by reference when possible)
    added to the dynamic table, unless it is never-indexed or too big.
    Huffman coding is never used.

    @ivar neverIndexed: names always sent as never-indexed literals (values
        that change every time would only churn the table).
    """

    def __init__(self, neverIndexed: Iterable[bytes] = ()) -> None:
        """
        @param neverIndexed: names to send as never-indexed literals, besides
            any header given as an L{hpack.NeverIndexedHeaderTuple}.
        """
        self.neverIndexed = frozenset(neverIndexed)
        # Oldest first: (header, absolute insertion number, size).
        self._entries: deque[tuple[Header, int, int]] = deque()
        self._size = 0
        self._inserted = 0
        # The newest insertion number of each pair and each name.
        self._pairs: dict[Header, int] = {}
        self._names: dict[bytes, int] = {}

    def encode(self, headers: Iterable[Header]) -> bytes:
        """
        @param headers: (name, value) pairs of bytes, names lowercase; an
            L{hpack.NeverIndexedHeaderTuple} is kept out of the dynamic table.
        @return: the encoded block.
        @raise TypeError: when a name or value is not bytes-like.
        """
        out: list[bytes] = []
        append = out.append
        pairs = self._pairs
        staticPairs = _STATIC_PAIRS
        indexed = _INDEXED
        for header in headers:
            try:
                index = staticPairs.get(header)
                if index is None:
                    absolute = pairs.get(header)
                    if absolute is not None:
                        index = _STATIC_COUNT + 1 + self._inserted - absolute
            except TypeError:
                # An unhashable bytes-like name or value: no table holds it.
                index = None
            if index is None:
                append(self._literal(header))
            elif index < 127:
                append(indexed[index])
            else:
                append(_integer(index, 7, 0x80))
        return b"".join(out)

    def _literal(self, header: Header) -> bytes:
        """
        Encode a header the table does not hold, and index it when it is
        worth it.
        """
        name, value = header
        if name.__class__ is not bytes:
            name = bytes(name)
        if value.__class__ is not bytes:
            value = bytes(value)
        nameIndex = _STATIC_NAMES.get(name)
        if nameIndex is None:
            absolute = self._names.get(name)
            if absolute is not None:
                nameIndex = _STATIC_COUNT + 1 + self._inserted - absolute
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if header.__class__ is NeverIndexedHeaderTuple or name in self.neverIndexed:
            # Literal never indexed (0x10), 4-bit name index.
            prefixBits, flags, index = 4, 0x10, False
        elif size > _MAX_INDEXED_ENTRY:
            # Literal without indexing (0x00), 4-bit name index.
            prefixBits, flags, index = 4, 0x00, False
        else:
            # Literal with incremental indexing (0x40), 6-bit name index.
            prefixBits, flags, index = 6, 0x40, True
        if nameIndex is None:
            block = bytes([flags]) + _string(name) + _string(value)
        else:
            block = _integer(nameIndex, prefixBits, flags) + _string(value)
        if index:
            self._add((name, value), size)
        return block

    def _add(self, header: Header, size: int) -> None:
        """
        Insert at the head of the dynamic table, evicting the oldest entries
        to make room, exactly as the decoder will.
        """
        entries = self._entries
        pairs = self._pairs
        names = self._names
        self._size += size
        while self._size > TABLE_SIZE:
            old, absolute, oldSize = entries.popleft()
            self._size -= oldSize
            if pairs.get(old) == absolute:
                del pairs[old]
            if names.get(old[0]) == absolute:
                del names[old[0]]
        self._inserted += 1
        absolute = self._inserted
        entries.append((header, absolute, size))
        pairs[header] = absolute
        names[header[0]] = absolute


class _Malformed(Exception):
    """
    The block is not valid HPACK; turned into a L{ProtocolError}.
    """


def _readInteger(block: bytes, pos: int, value: int, end: int) -> tuple[int, int]:
    """
    Finish reading an HPACK integer whose prefix was full.

    @param block: the block.
    @param pos: the index of the first continuation byte.
    @param value: the prefix value (its maximum).
    @param end: the block length.
    @return: the integer and the index after it.
    @raise _Malformed: when it is truncated or longer than L{_MAX_INT_BYTES}.
    """
    shift = 0
    for _ in range(_MAX_INT_BYTES):
        if pos >= end:
            raise _Malformed("truncated integer")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed("integer too large")


class HeaderBlockDecoder:
    """
    Decode HPACK blocks from one direction of a link, bounding the decoded
    size.

    @ivar maxHeaderListSize: the largest decoded header list accepted, counted
        as HPACK does (name + value + 32 per header).
    """

    def __init__(self, maxHeaderListSize: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        self.maxHeaderListSize = maxHeaderListSize
        # Newest last: (header, HPACK size).
        self._entries: list[tuple[Header, int]] = []
        self._size = 0
        self._maxSize = TABLE_SIZE

    def decode(self, block: bytes) -> list[Header]:
        """
        @param block: one complete HPACK block.
        @return: the header list.
        @raise ProtocolError: C{COMPRESSION_ERROR} when the block is invalid
            or decodes to more than C{maxHeaderListSize}; the decoder's state
            is then unusable and the link must close.
        """
        try:
            return self._decode(block)
        except _Malformed as e:
            raise ProtocolError(
                ErrorCode.COMPRESSION_ERROR, f"invalid header block: {e}"
            ) from e
        except (HPACKError, IndexError, ValueError, TypeError) as e:
            raise ProtocolError(
                ErrorCode.COMPRESSION_ERROR, f"invalid header block: {e}"
            ) from e

    def _decode(self, block: bytes) -> list[Header]:
        headers: list[Header] = []
        append = headers.append
        entries = self._entries
        static = _STATIC_SIZED
        limit = self.maxHeaderListSize
        total = 0
        pos = 0
        end = len(block)
        while pos < end:
            byte = block[pos]
            pos += 1
            if byte & 0x80:
                # Indexed header field.
                index = byte & 0x7F
                if index == 0x7F:
                    index, pos = _readInteger(block, pos, index, end)
                if index <= _STATIC_COUNT:
                    if index == 0:
                        raise _Malformed("index 0")
                    header, size = static[index]
                else:
                    dynamic = index - _STATIC_COUNT
                    if dynamic > len(entries):
                        raise _Malformed(f"index {index} beyond the table")
                    header, size = entries[-dynamic]
            elif byte & 0x60 == 0x20:
                # Dynamic table size update: only before the first header.
                if headers:
                    raise _Malformed("table size update after a header")
                size = byte & 0x1F
                if size == 0x1F:
                    size, pos = _readInteger(block, pos, size, end)
                if size > TABLE_SIZE:
                    raise _Malformed(f"table size {size} above {TABLE_SIZE}")
                self._maxSize = size
                self._evict(size)
                continue
            else:
                if byte & 0x40:
                    # Literal with incremental indexing, 6-bit name index.
                    index = byte & 0x3F
                    if index == 0x3F:
                        index, pos = _readInteger(block, pos, index, end)
                else:
                    # Literal without indexing or never indexed, 4-bit index.
                    index = byte & 0x0F
                    if index == 0x0F:
                        index, pos = _readInteger(block, pos, index, end)
                if not index:
                    name, pos = self._string(block, pos, end)
                elif index <= _STATIC_COUNT:
                    name = static[index][0][0]
                else:
                    dynamic = index - _STATIC_COUNT
                    if dynamic > len(entries):
                        raise _Malformed(f"name index {index} beyond the table")
                    name = entries[-dynamic][0][0]
                value, pos = self._string(block, pos, end)
                header = (name, value)
                size = len(name) + len(value) + _ENTRY_OVERHEAD
                if byte & 0x40:
                    self._insert(header, size)
            total += size
            if total > limit:
                raise ProtocolError(
                    ErrorCode.COMPRESSION_ERROR,
                    f"header list larger than {limit} bytes",
                )
            append(header)
        return headers

    @staticmethod
    def _string(block: bytes, pos: int, end: int) -> tuple[bytes, int]:
        """
        Read a string literal at C{pos}.

        @return: the string and the index after it.
        """
        if pos >= end:
            raise _Malformed("truncated string")
        byte = block[pos]
        pos += 1
        length = byte & 0x7F
        if length == 0x7F:
            length, pos = _readInteger(block, pos, length, end)
        stop = pos + length
        if stop > end:
            raise _Malformed("string beyond the block")
        data = block[pos:stop]
        if byte & 0x80:
            data = decode_huffman(data)
        return data, stop

    def _insert(self, header: Header, size: int) -> None:
        if size > self._maxSize:
            # RFC 7541 section 4.4: an entry larger than the table empties it.
            self._entries.clear()
            self._size = 0
            return
        self._evict(self._maxSize - size)
        self._entries.append((header, size))
        self._size += size

    def _evict(self, room: int) -> None:
        """
        Drop the oldest entries until the table holds at most C{room} bytes.
        """
        drop = 0
        size = self._size
        entries = self._entries
        while size > room:
            size -= entries[drop][1]
            drop += 1
        if drop:
            del entries[:drop]
            self._size = size

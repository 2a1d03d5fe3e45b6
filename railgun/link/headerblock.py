"""
HPACK header blocks for the link, one encoder and one decoder per link
direction.

Headers are C{list[tuple[bytes, bytes]]} with lowercase names.  The encoder
and decoder keep HPACK's dynamic table, so blocks must be decoded in exactly
the order they were encoded: the link encodes a block only when it puts the
frame on the wire, and decodes every received block, even one for a stream
it then refuses.
"""

from __future__ import annotations

from collections.abc import Iterable

import hpack
from hpack.huffman_constants import REQUEST_CODES_LENGTH

from .errors import ErrorCode, ProtocolError

Header = tuple[bytes, bytes]

DEFAULT_MAX_HEADER_LIST_SIZE = 256 * 1024

# Worst case bytes HPACK adds around one literal header: a type byte plus two
# length prefixes of at most 5 bytes each for lengths below 2**28.
_PER_HEADER_OVERHEAD = 11
# A block may start with up to two dynamic table size updates.
_PER_BLOCK_OVERHEAD = 16
# hpack Huffman-codes every literal; a code is at most 30 bits per byte.
_WORST_HUFFMAN_BITS = max(REQUEST_CODES_LENGTH)


def _huffmanLength(data: bytes) -> int:
    return (sum(map(REQUEST_CODES_LENGTH.__getitem__, data)) + 7) // 8


def maxEncodedSize(headers: Iterable[Header]) -> int:
    """
    An upper bound of the size of the HPACK block for C{headers}, computed
    without touching an encoder's state: every header as a literal with a
    literal name, each string at its exact Huffman length.

    @param headers: the header list.
    @return: a byte count that the encoded block never exceeds.
    """
    total = _PER_BLOCK_OVERHEAD
    for name, value in headers:
        total += _huffmanLength(name) + _huffmanLength(value) + _PER_HEADER_OVERHEAD
    return total


def blockFits(headers: list[Header], limit: int) -> bool:
    """
    Whether the HPACK block for C{headers} surely fits in C{limit} bytes.

    The link checks this against the peer's limits before it accepts headers
    to send: once a block is encoded the dynamic table has changed, so a
    block that turned out too big could not simply be dropped.  A cheap
    worst-case bound answers for all usual header lists; the exact Huffman
    lengths are computed only for large ones.

    @param headers: the header list.
    @param limit: the largest block allowed.
    @return: C{True} when the encoded block cannot exceed C{limit}.
    """
    rough = _PER_BLOCK_OVERHEAD
    for name, value in headers:
        rough += (
            ((len(name) + len(value)) * _WORST_HUFFMAN_BITS + 7) // 8
            + _PER_HEADER_OVERHEAD
            + 1
        )
    if rough <= limit:
        return True
    return maxEncodedSize(headers) <= limit


class HeaderBlockEncoder:
    """
    Encode header lists into HPACK blocks for one direction of a link.
    """

    def __init__(self) -> None:
        self._encoder = hpack.Encoder()

    def encode(self, headers: Iterable[Header | hpack.HeaderTuple]) -> bytes:
        """
        @param headers: (name, value) pairs of bytes, names lowercase; an
            L{hpack.NeverIndexedHeaderTuple} is kept out of the dynamic table.
        @return: the encoded block.
        """
        return self._encoder.encode(headers, huffman=True)


class HeaderBlockDecoder:
    """
    Decode HPACK blocks from one direction of a link, bounding the decoded
    size.

    @ivar maxHeaderListSize: the largest decoded header list accepted, counted
        as HPACK does (name + value + 32 per header).
    """

    def __init__(self, maxHeaderListSize: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        self.maxHeaderListSize = maxHeaderListSize
        self._decoder = hpack.Decoder(max_header_list_size=maxHeaderListSize)

    def decode(self, block: bytes) -> list[Header]:
        """
        @param block: one complete HPACK block.
        @return: the header list.
        @raise ProtocolError: C{COMPRESSION_ERROR} when the block is invalid
            or decodes to more than C{maxHeaderListSize}; the decoder's state
            is then unusable and the link must close.
        """
        try:
            decoded = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as e:
            raise ProtocolError(
                ErrorCode.COMPRESSION_ERROR,
                f"header list larger than {self.maxHeaderListSize} bytes",
            ) from e
        except (hpack.HPACKError, IndexError, ValueError, TypeError) as e:
            raise ProtocolError(
                ErrorCode.COMPRESSION_ERROR, f"invalid header block: {e}"
            ) from e
        return [(name, value) for name, value in decoded]  # type: ignore[misc]

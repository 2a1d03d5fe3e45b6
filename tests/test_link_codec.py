"""
Tests for the link's header blocks, request ids, byte counters and errors.
"""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.interfaces import ITransport
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from railgun.link.counting import ByteCounters, CountingTransport
from railgun.link.errors import (
    ErrorCode,
    LinkError,
    LinkLost,
    LinkUnavailable,
    ProtocolError,
    StreamRefused,
    StreamReset,
    errorCodeFromWire,
)
from railgun.link.headerblock import (
    HeaderBlockDecoder,
    HeaderBlockEncoder,
    blockFits,
    maxEncodedSize,
)
from railgun.link.requestid import RequestIdGenerator

names = st.binary(min_size=1, max_size=40).map(lambda b: b.lower())
headerLists = st.lists(st.tuples(names, st.binary(max_size=300)), max_size=20)


class HeaderBlockTests(SynchronousTestCase):
    """
    HPACK blocks round-trip and bad blocks are COMPRESSION_ERRORs.
    """

    @settings(max_examples=100, deadline=None)
    @given(st.lists(headerLists, min_size=1, max_size=5))
    def test_roundTripSequence(self, blocks: list[list[tuple[bytes, bytes]]]) -> None:
        """
        A sequence of header lists decodes back equal through one encoder and
        decoder pair (the dynamic table stays in sync), and maxEncodedSize
        bounds every block.
        """
        encoder, decoder = HeaderBlockEncoder(), HeaderBlockDecoder()
        for headers in blocks:
            block = encoder.encode(headers)
            self.assertLessEqual(len(block), maxEncodedSize(headers))
            # Sound: never claims a block fits in less than its real size.
            self.assertFalse(blockFits(headers, len(block) - 1))
            self.assertEqual(decoder.decode(block), headers)

    def test_blockFits(self) -> None:
        """
        blockFits bounds a block by its raw lengths (the encoder never
        Huffman-codes): 16 + 11 per header + names and values.
        """
        self.assertTrue(blockFits([(b"a", b"b")], 100))
        big = [(b"x-a", b"a" * 3000)]
        self.assertEqual(maxEncodedSize(big), 16 + 11 + 3 + 3000)
        self.assertTrue(blockFits(big, 3030))
        self.assertFalse(blockFits(big, 3029))
        self.assertLessEqual(len(HeaderBlockEncoder().encode(big)), 3030)
        self.assertRaises(TypeError, blockFits, [("text", b"v")], 100)

    def test_neverIndexed(self) -> None:
        """
        A never-indexed header decodes like any other.
        """
        encoder, decoder = HeaderBlockEncoder(), HeaderBlockDecoder()
        block = encoder.encode([hpack.NeverIndexedHeaderTuple(b":request-id", b"ab")])
        self.assertEqual(decoder.decode(block), [(b":request-id", b"ab")])

    def test_oversizedList(self) -> None:
        """
        A block decoding to more than maxHeaderListSize is a COMPRESSION_ERROR.
        """
        block = HeaderBlockEncoder().encode([(b"x-big", b"v" * 2000)])
        error = self.assertRaises(ProtocolError, HeaderBlockDecoder(1024).decode, block)
        self.assertEqual(error.code, ErrorCode.COMPRESSION_ERROR)

    def test_invalidIndex(self) -> None:
        """
        A reference to a missing table entry is a COMPRESSION_ERROR.
        """
        error = self.assertRaises(
            ProtocolError, HeaderBlockDecoder().decode, b"\xff\x7f"
        )
        self.assertEqual(error.code, ErrorCode.COMPRESSION_ERROR)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_randomBlocks(self, block: bytes) -> None:
        """
        Random bytes decode or raise ProtocolError(COMPRESSION_ERROR), nothing
        else.
        """
        try:
            HeaderBlockDecoder(4096).decode(block)
        except ProtocolError as e:
            self.assertEqual(e.code, ErrorCode.COMPRESSION_ERROR)


class HpackInteropTests(SynchronousTestCase):
    """
    Our HPACK codec speaks RFC 7541: the C{hpack} package decodes what it
    encodes and the other way round, over sequences that fill, evict and
    reference the dynamic table.
    """

    @settings(max_examples=100, deadline=None)
    @given(st.lists(headerLists, min_size=1, max_size=8))
    def test_ourEncoderTheirDecoder(
        self, blocks: list[list[tuple[bytes, bytes]]]
    ) -> None:
        """
        hpack's decoder reads our blocks, in sequence, as the lists we encoded.
        """
        encoder, decoder = HeaderBlockEncoder(), hpack.Decoder()
        for headers in blocks:
            decoded = decoder.decode(encoder.encode(headers), raw=True)
            self.assertEqual([tuple(h) for h in decoded], headers)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(headerLists, min_size=1, max_size=8), st.booleans())
    def test_theirEncoderOurDecoder(
        self, blocks: list[list[tuple[bytes, bytes]]], huffman: bool
    ) -> None:
        """
        Our decoder reads hpack's blocks, Huffman-coded or not, in sequence.
        """
        encoder, decoder = hpack.Encoder(), HeaderBlockDecoder()
        for headers in blocks:
            block = encoder.encode(headers, huffman=huffman)
            self.assertEqual(decoder.decode(block), headers)

    def test_manyEntries(self) -> None:
        """
        Over thousands of distinct headers (eviction, multi-byte indexes
        past 127 table entries) and repeats, both decoders agree with the
        input, and repeats shrink to one byte per header.
        """
        encoder, ours, theirs = (
            HeaderBlockEncoder(),
            HeaderBlockDecoder(),
            hpack.Decoder(),
        )
        # 110 entries of 36 bytes fill most of the 4096-byte table.
        small = [(b"k%03d" % i, b"") for i in range(110)]
        sizes = []
        for headers in (
            [small, small]
            + [[(b"x-n", b"%d" % i), (b"x-m", b"v" * (i % 300))] for i in range(2000)]
            + [small[:60], small[:60]]
        ):
            block = encoder.encode(headers)
            sizes.append(len(block))
            self.assertEqual(ours.decode(block), headers)
            self.assertEqual(
                [tuple(h) for h in theirs.decode(block, raw=True)], headers
            )
        # The repeat is all references: indexes 62..126 take one byte, the
        # 45 oldest entries (127..171) two.
        self.assertEqual(sizes[1], 65 + 2 * 45)
        self.assertEqual(sizes[-1], 60)
        self.assertEqual(encoder.encode([(b":method", b"GET")]), b"\x82")

    def test_neverIndexedNames(self) -> None:
        """
        Names given as neverIndexed are sent as never-indexed literals, and so
        never enter the table: the same header costs as much the next time.
        """
        encoder = HeaderBlockEncoder(neverIndexed=[b":request-id"])
        first = encoder.encode([(b":request-id", b"abcd")])
        self.assertEqual(first[0], 0x10)
        self.assertEqual(encoder.encode([(b":request-id", b"abcd")]), first)
        indexing = HeaderBlockEncoder()
        indexing.encode([(b":request-id", b"abcd")])
        self.assertEqual(len(indexing.encode([(b":request-id", b"abcd")])), 1)

    def test_bigEntriesNotIndexed(self) -> None:
        """
        A header bigger than half the table is sent without indexing, so it
        does not evict the rest.
        """
        encoder, decoder = HeaderBlockEncoder(), HeaderBlockDecoder()
        headers = [(b"x-small", b"s"), (b"x-big", b"b" * 3000)]
        first = encoder.encode(headers)
        second = encoder.encode(headers)
        # Only x-small became a reference: its 11-byte literal, 1 byte.
        self.assertEqual(len(second), len(first) - 10)
        self.assertEqual(decoder.decode(first), headers)
        self.assertEqual(decoder.decode(second), headers)

    def test_bytesLike(self) -> None:
        """
        bytearray and memoryview names and values encode like bytes.
        """
        encoder, decoder = HeaderBlockEncoder(), HeaderBlockDecoder()
        block = encoder.encode([(bytearray(b"x-a"), memoryview(b"v"))])
        self.assertEqual(decoder.decode(block), [(b"x-a", b"v")])

    def test_malformed(self) -> None:
        """
        Truncated or out-of-range representations are COMPRESSION_ERRORs.
        """
        for block in [
            b"\x80",  # index 0
            b"\xbe",  # dynamic index 62 with an empty table
            b"\x7e\x01a",  # name index 62 with an empty table
            b"\xff\xff\xff\xff\xff\x7f",  # integer too long
            b"\xff",  # truncated integer
            b"\x40\x05ab",  # name longer than the block
            b"\x40",  # missing name
            b"\x00\x01a",  # missing value
            b"\x3f\xe2\x1f",  # table size 4097
            b"\x82\x20",  # size update after a header
            b"\x00\x01a\x81\xff",  # bad Huffman padding
        ]:
            error = self.assertRaises(ProtocolError, HeaderBlockDecoder().decode, block)
            self.assertEqual(error.code, ErrorCode.COMPRESSION_ERROR, block)

    def test_tableSizeUpdate(self) -> None:
        """
        A size update at the start of a block shrinks the table (evicting),
        after which references to evicted entries are errors.
        """
        decoder = HeaderBlockDecoder()
        self.assertEqual(
            decoder.decode(HeaderBlockEncoder().encode([(b"x-a", b"1")])),
            [(b"x-a", b"1")],
        )
        self.assertEqual(decoder.decode(b"\xbe"), [(b"x-a", b"1")])
        self.assertEqual(decoder.decode(b"\x20"), [])
        error = self.assertRaises(ProtocolError, decoder.decode, b"\xbe")
        self.assertEqual(error.code, ErrorCode.COMPRESSION_ERROR)

    def test_oversizedListOfReferences(self) -> None:
        """
        The list-size limit counts referenced entries too: many one-byte
        references to a table entry cannot inflate past maxHeaderListSize.
        """
        encoder = HeaderBlockEncoder()
        decoder = HeaderBlockDecoder(4096)
        decoder.decode(encoder.encode([(b"x-a", b"v" * 900)]))
        self.assertEqual(len(decoder.decode(b"\xbe" * 3)), 3)
        error = self.assertRaises(ProtocolError, decoder.decode, b"\xbe" * 5)
        self.assertEqual(error.code, ErrorCode.COMPRESSION_ERROR)


class RequestIdTests(SynchronousTestCase):
    """
    Request ids are 20 hex digits, unique, and seed dependent.
    """

    def test_format(self) -> None:
        """
        Ids are 20 lowercase hex digits.
        """
        value = RequestIdGenerator().next()
        self.assertEqual(len(value), 20)
        self.assertEqual(value, value.lower())
        int(value, 16)

    def test_unique(self) -> None:
        """
        One generator never repeats itself over many ids.
        """
        generator = RequestIdGenerator(b"seed")
        ids = {generator.next() for _ in range(20000)}
        self.assertEqual(len(ids), 20000)

    def test_seeds(self) -> None:
        """
        The same seed gives the same sequence; different seeds differ.
        """
        a, b, c = (RequestIdGenerator(s) for s in (b"one", b"one", b"two"))
        first = [a.next() for _ in range(5)]
        self.assertEqual(first, [b.next() for _ in range(5)])
        self.assertNotEqual(first, [c.next() for _ in range(5)])
        self.assertNotEqual(RequestIdGenerator().next(), RequestIdGenerator().next())


class CountingTransportTests(SynchronousTestCase):
    """
    L{CountingTransport} counts written bytes and forwards everything.
    """

    def test_counts(self) -> None:
        """
        write and writeSequence are counted and reach the wrapped transport.
        """
        inner = StringTransport()
        counters = ByteCounters()
        transport = CountingTransport(inner, counters)
        verifyObject(ITransport, transport)
        transport.write(b"abc")
        transport.writeSequence(iter([b"de", b"f"]))
        self.assertEqual(transport.bytesWritten, 6)
        self.assertEqual(counters, ByteCounters(sent=6, received=0))
        self.assertEqual(inner.value(), b"abcdef")

    def test_forwardsOtherAttributes(self) -> None:
        """
        Attributes outside ITransport (producers, abortConnection) are the
        wrapped transport's.
        """
        inner = StringTransport()
        transport = CountingTransport(inner)
        transport.abortConnection()
        self.assertTrue(inner.disconnecting)
        self.assertEqual(transport.getPeer(), inner.getPeer())


class ErrorTests(SynchronousTestCase):
    """
    Error codes and exceptions carry what the spec says.
    """

    def test_codes(self) -> None:
        """
        The codes have their wire values; unknown codes map to INTERNAL_ERROR.
        """
        self.assertEqual(ErrorCode.UNSUPPORTED_VERSION, 13)
        self.assertEqual(ErrorCode.AUTH_FAILED, 9)
        self.assertIs(errorCodeFromWire(10), ErrorCode.ENHANCE_YOUR_CALM)
        self.assertIs(errorCodeFromWire(4242), ErrorCode.INTERNAL_ERROR)

    def test_exceptions(self) -> None:
        """
        The failure classes share LinkError and keep their fields.
        """
        for cls in (StreamRefused, LinkLost, LinkUnavailable):
            self.assertTrue(issubclass(cls, LinkError))
        reset = StreamReset(ErrorCode.CANCEL, remote=True)
        self.assertIsInstance(reset, LinkError)
        self.assertEqual((reset.code, reset.remote), (ErrorCode.CANCEL, True))
        error = ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "too big")
        self.assertEqual(str(error), "FRAME_SIZE_ERROR: too big")

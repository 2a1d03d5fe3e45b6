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
        blockFits accepts small lists cheaply and measures large ones exactly.
        """
        self.assertTrue(blockFits([(b"a", b"b")], 100))
        # 3000 'a's Huffman-code to 1875 bytes: the rough bound says no, the
        # exact one yes.
        big = [(b"x-a", b"a" * 3000)]
        self.assertTrue(blockFits(big, 1910))
        self.assertFalse(blockFits(big, 1800))
        self.assertFalse(blockFits([(b"x-b", bytes(range(256)) * 4)], 1100))

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

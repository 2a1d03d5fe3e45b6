"""
Tests for L{railgun.delta.content}.
"""

from __future__ import annotations

import gzip
import zlib

import brotli
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.content import (
    ContentDecodingError,
    chooseEncoding,
    decodeContentEncoding,
    encodeBody,
    isDeltaEligible,
    isTextLike,
)

BODY = (
    b"<html><body>"
    + b"".join(b"<p>item %d</p>\n" % i for i in range(3000))
    + b"</body></html>"
)
MB = 1024 * 1024


def rawDeflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


ENCODERS = {
    b"gzip": lambda d: gzip.compress(d, mtime=0),
    b"x-gzip": lambda d: gzip.compress(d, mtime=0),
    b"deflate": zlib.compress,
    b"br": brotli.compress,
    b"zstd": lambda d: zstandard.ZstdCompressor().compress(d),
}


class EligibilityTests(SynchronousTestCase):
    """
    Tests for L{isDeltaEligible} and L{isTextLike}.
    """

    def test_textTypes(self) -> None:
        """
        Text and the text formats of other top-level types are eligible,
        parameters and case notwithstanding.
        """
        for ct in [
            b"text/html",
            b"text/html; charset=utf-8",
            b"TEXT/CSS",
            b"text/plain",
            b"application/json",
            b"application/ld+json",
            b"application/problem+json",
            b"application/javascript",
            b"application/x-javascript",
            b"text/javascript",
            b"application/ecmascript",
            b"application/xml",
            b"application/rss+xml",
            b"application/atom+xml",
            b"image/svg+xml",
            b"application/xhtml+xml",
            b"application/dart",
            b"application/vnd.api+json",
            b"  text/csv ;q",
        ]:
            self.assertTrue(isDeltaEligible(b"GET", 200, ct, 1000, 250_000), ct)

    def test_binaryAndOtherTypes(self) -> None:
        """
        Binary types, forms, streams and malformed values are not eligible.
        """
        for ct in [
            None,
            b"",
            b"image/png",
            b"application/octet-stream",
            b"video/mp4",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"application/zip",
            b"text/event-stream",
            b"text",
            b"/json",
            b"text/",
            b"application/pdf",
            b"font/woff2",
            b"\xff\xfe/\x00",
        ]:
            self.assertFalse(isDeltaEligible(b"GET", 200, ct, 1000, 250_000), ct)

    def test_methodAndStatus(self) -> None:
        """
        Only GET 200 responses are versions.
        """
        self.assertFalse(isDeltaEligible(b"HEAD", 200, b"text/html", 10, 100))
        self.assertFalse(isDeltaEligible(b"POST", 200, b"text/html", 10, 100))
        self.assertFalse(isDeltaEligible(b"get", 200, b"text/html", 10, 100))
        for status in (201, 204, 206, 301, 304, 404, 500):
            self.assertFalse(isDeltaEligible(b"GET", status, b"text/html", 10, 100))

    def test_length(self) -> None:
        """
        Unknown lengths and lengths up to maxSize are eligible; larger or
        negative ones are not.
        """
        self.assertTrue(isDeltaEligible(b"GET", 200, b"text/html", None, 100))
        self.assertTrue(isDeltaEligible(b"GET", 200, b"text/html", 100, 100))
        self.assertTrue(isDeltaEligible(b"GET", 200, b"text/html", 0, 100))
        self.assertFalse(isDeltaEligible(b"GET", 200, b"text/html", 101, 100))
        self.assertFalse(isDeltaEligible(b"GET", 200, b"text/html", -1, 100))

    @given(st.binary(max_size=60))
    def test_neverRaises(self, ct: bytes) -> None:
        """
        Any Content-Type value gives an answer, never an exception.
        """
        self.assertIn(isTextLike(ct), (True, False))


class DecodeTests(SynchronousTestCase):
    """
    Tests for L{decodeContentEncoding}.
    """

    def test_each(self) -> None:
        """
        Each supported coding decodes, names case-insensitive.
        """
        for coding, encode in ENCODERS.items():
            data = encode(BODY)
            self.assertEqual(decodeContentEncoding(data, coding, MB), BODY, coding)
            self.assertEqual(
                decodeContentEncoding(data, coding.upper(), MB), BODY, coding
            )

    def test_rawDeflate(self) -> None:
        """
        "deflate" sent as raw deflate (a common server bug) decodes too.
        """
        self.assertEqual(decodeContentEncoding(rawDeflate(BODY), b"deflate", MB), BODY)

    def test_identity(self) -> None:
        """
        identity and an empty value leave the body alone.
        """
        self.assertEqual(decodeContentEncoding(BODY, b"identity", MB), BODY)
        self.assertEqual(decodeContentEncoding(BODY, b"", MB), BODY)
        self.assertEqual(decodeContentEncoding(b"", b"identity", MB), b"")

    def test_stacked(self) -> None:
        """
        Stacked codings are undone last first.
        """
        data = brotli.compress(gzip.compress(BODY))
        self.assertEqual(decodeContentEncoding(data, b"gzip, br", MB), BODY)
        self.assertRaises(
            ContentDecodingError, decodeContentEncoding, data, b"br, gzip", MB
        )
        data = zstandard.ZstdCompressor().compress(zlib.compress(BODY))
        self.assertEqual(
            decodeContentEncoding(data, b"deflate,identity, zstd", MB), BODY
        )

    def test_tooManyStacked(self) -> None:
        """
        More than four stacked codings are refused.
        """
        data = BODY
        for _ in range(5):
            data = gzip.compress(data)
        self.assertRaises(
            ContentDecodingError, decodeContentEncoding, data, b"gzip," * 5, 10 * MB
        )

    def test_unknown(self) -> None:
        """
        Unsupported codings are refused.
        """
        for coding in (b"compress", b"lzma", b"gzip, snappy"):
            self.assertRaises(
                ContentDecodingError, decodeContentEncoding, BODY, coding, MB
            )

    def test_truncatedAndTrailing(self) -> None:
        """
        Truncated data and data followed by garbage are refused for every
        coding.
        """
        for coding, encode in ENCODERS.items():
            data = encode(BODY)
            for bad in (data[:-3], data[: len(data) // 2], data + b"garbage!"):
                self.assertRaises(
                    ContentDecodingError, decodeContentEncoding, bad, coding, MB
                )
        self.assertRaises(ContentDecodingError, decodeContentEncoding, b"", b"zstd", MB)

    def test_gzipMembers(self) -> None:
        """
        Several gzip members in a row decode to their concatenation.
        """
        data = gzip.compress(b"abc") + gzip.compress(b"def")
        self.assertEqual(decodeContentEncoding(data, b"gzip", 100), b"abcdef")

    def test_maxSize(self) -> None:
        """
        A result of exactly maxSize is accepted, one byte more refused.
        """
        for coding, encode in ENCODERS.items():
            data = encode(BODY)
            self.assertEqual(decodeContentEncoding(data, coding, len(BODY)), BODY)
            self.assertRaises(
                ContentDecodingError, decodeContentEncoding, data, coding, len(BODY) - 1
            )
        self.assertRaises(
            ContentDecodingError,
            decodeContentEncoding,
            BODY,
            b"identity",
            len(BODY) - 1,
        )

    def test_bombsCapped(self) -> None:
        """
        64 MB of zeros compressed by each coding is stopped at a 1 MB cap,
        quickly (it is never inflated in full).
        """
        zeros = b"\0" * (64 * MB)
        bombs = {
            b"gzip": gzip.compress(zeros, 9),
            b"deflate": zlib.compress(zeros, 9),
            b"br": brotli.compress(zeros, quality=1),
            b"zstd": zstandard.ZstdCompressor(
                level=1, write_content_size=False
            ).compress(zeros),
        }
        del zeros
        for coding, bomb in bombs.items():
            self.assertLess(len(bomb), 2 * MB)
            self.assertRaises(
                ContentDecodingError, decodeContentEncoding, bomb, coding, MB
            )

    def test_stackedBombCapped(self) -> None:
        """
        A bomb inside a bomb is stopped at the cap as well.
        """
        inner = gzip.compress(b"\0" * (64 * MB), 9)
        outer = gzip.compress(inner, 9)
        self.assertRaises(
            ContentDecodingError, decodeContentEncoding, outer, b"gzip, gzip", MB
        )

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.sampled_from(sorted(ENCODERS)))
    def test_garbage(self, garbage: bytes, coding: bytes) -> None:
        """
        Random bytes give ContentDecodingError or a small result, never
        another exception.
        """
        try:
            out = decodeContentEncoding(garbage, coding, 10_000)
        except ContentDecodingError:
            return
        self.assertLessEqual(len(out), 10_000)


class ChooseEncodingTests(SynchronousTestCase):
    """
    Tests for L{chooseEncoding}.
    """

    def check(self, header: bytes | None, expected: bytes | None) -> None:
        self.assertEqual(chooseEncoding(header), expected, header)

    def test_absentOrEmpty(self) -> None:
        """
        No header, or an empty one, means identity.
        """
        self.check(None, None)
        self.check(b"", None)
        self.check(b" , ", None)

    def test_preferenceOnTies(self) -> None:
        """
        Equal qvalues prefer br, then zstd, then gzip.
        """
        self.check(b"gzip, deflate, br, zstd", b"br")
        self.check(b"gzip, deflate, zstd", b"zstd")
        self.check(b"gzip, deflate", b"gzip")
        self.check(b"x-gzip", b"gzip")
        self.check(b"deflate", None)

    def test_qvalues(self) -> None:
        """
        The highest qvalue wins; q=0 excludes.
        """
        self.check(b"br;q=0.5, gzip;q=0.8", b"gzip")
        self.check(b"br;q=0, gzip", b"gzip")
        self.check(b"br;q=0.001, gzip;q=0.0", b"br")
        self.check(b"gzip;q=1.000, br;q=0.999", b"gzip")
        self.check(b"GZIP;Q=0.5", b"gzip")
        self.check(b"gzip ; q=0.5 , br ; level=3", b"br")

    def test_star(self) -> None:
        """
        * stands for every coding not listed.
        """
        self.check(b"*", b"br")
        self.check(b"br;q=0, *", b"zstd")
        self.check(b"br;q=0, zstd;q=0, *;q=0.3", b"gzip")
        self.check(b"*;q=0", None)
        self.check(b"gzip;q=0.2, *;q=0.5", b"br")

    def test_identity(self) -> None:
        """
        An explicit identity that outranks every coding wins; identity;q=0
        alone does not make a coding acceptable.
        """
        self.check(b"gzip;q=0.5, identity", None)
        self.check(b"gzip, identity;q=0.5", b"gzip")
        self.check(b"identity;q=0", None)
        self.check(b"identity", None)

    def test_badQvalues(self) -> None:
        """
        Items with malformed qvalues are ignored.
        """
        self.check(b"br;q=2, gzip", b"gzip")
        self.check(b"br;q=abc, gzip;q=0.1", b"gzip")
        self.check(b"br;q=0.12345", None)
        self.check(b"br;q=-1", None)
        self.check(b"br;q=", None)

    @given(st.binary(max_size=100))
    def test_neverRaises(self, header: bytes) -> None:
        """
        Any header value gives a supported coding or None.
        """
        self.assertIn(chooseEncoding(header), (None, b"br", b"zstd", b"gzip"))


class EncodeBodyTests(SynchronousTestCase):
    """
    Tests for L{encodeBody}.
    """

    def test_roundTrip(self) -> None:
        """
        Each coding chooseEncoding can return encodes a body that
        decodeContentEncoding (and so any client) decodes back.
        """
        for coding in (b"br", b"zstd", b"gzip"):
            data = encodeBody(BODY, coding)
            self.assertLess(len(data), len(BODY) // 4)
            self.assertEqual(decodeContentEncoding(data, coding, MB), BODY)

    def test_identity(self) -> None:
        """
        None and identity leave the body alone.
        """
        self.assertIs(encodeBody(BODY, None), BODY)
        self.assertIs(encodeBody(BODY, b"identity"), BODY)

    def test_emptyBody(self) -> None:
        """
        An empty body encodes and decodes for every coding.
        """
        for coding in (b"br", b"zstd", b"gzip"):
            self.assertEqual(
                decodeContentEncoding(encodeBody(b"", coding), coding, 0), b""
            )

    def test_unsupported(self) -> None:
        """
        A coding we do not produce is a ValueError (a caller bug).
        """
        self.assertRaises(ValueError, encodeBody, BODY, b"deflate")

    def test_zstdWindowForClients(self) -> None:
        """
        zstd towards clients keeps its window within 8 MB (RFC 9659) and
        writes the content size.
        """
        big = BODY * 80
        params = zstandard.get_frame_parameters(encodeBody(big, b"zstd"))
        self.assertLessEqual(params.window_size, 8 * MB)
        self.assertEqual(params.content_size, len(big))

"""
Header blocks a link peer sends, however wrong (an interim 1xx head, a
control header twice, absurd control values, trailers in the middle of a
version), never make the edge or the origin role raise: the edge answers
502 or aborts its client, the origin role answers 400.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from railgun.delta.codec import defaultRegistry
from railgun.delta.digest import versionDigest
from railgun.http.messages import (
    BadMessage,
    RequestHead,
    ResponseHead,
    splitControl,
)
from railgun.link.errors import ErrorCode
from railgun.stores.memory import MemoryVersionStore
from tests.test_edge_perf import _connect
from tests.test_edge_robustness import _edge
from tests.test_origin_handler import _Collector, _HandlerBase

GET = b"GET /page HTTP/1.1\r\nHost: bench.local\r\n\r\n"
BODY = b"<p>hello</p>\n" * 50
DIGEST = versionDigest(BODY).encode()


def _start(deltas: bool = True) -> tuple[Any, Any, Any, Any]:
    """
    An edge (with or without deltas) that has sent one GET on a stream.

    @return: the stream's handler, the stream, the client's transport and
        the fake link.
    """
    clock = Clock()
    kw: dict[str, Any] = {}
    if deltas:
        kw = dict(cache=MemoryVersionStore(clock=clock), codecs=defaultRegistry())
    factory, link, _ = _edge(clock, **kw)
    channel, transport = _connect(factory)
    channel.dataReceived(GET)
    handler, _, stream = link.opened[-1]
    return handler, stream, transport, link


def _fullHead(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b":status", b"200"),
        (b"content-type", b"text/html"),
        (b"railgun-body", b"full"),
        (b"railgun-codec", b"identity"),
        (b"railgun-digest", DIGEST),
        *extra,
    ]


class EdgeHeadTests(SynchronousTestCase):
    """
    The edge's stream handler against header blocks a peer should not send.
    """

    def assert502(self, transport: Any, stream: Any) -> None:
        """
        The client got the edge's 502 for a malformed head, the stream was
        reset as a protocol error, nothing was logged as an error.
        """
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 502 "), transport.value()[:80]
        )
        self.assertIn(b"malformed response", transport.value())
        self.assertEqual(stream.resets, [ErrorCode.PROTOCOL_ERROR])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_interimHeadIsMalformed(self) -> None:
        """
        A 1xx head is refused as malformed (502), not relayed as the final
        response; a head after it changes nothing.
        """
        for status in (b"100", b"103", b"199"):
            handler, stream, transport, _ = _start()
            handler.headersReceived([(b":status", status)], False)
            handler.headersReceived([(b":status", b"200")], True)
            self.assert502(transport, stream)

    def test_duplicateControlHeader(self) -> None:
        """
        A control header twice (railgun-digest) is a malformed head: 502,
        not an exception.
        """
        handler, stream, transport, _ = _start()
        handler.headersReceived(_fullHead((b"railgun-digest", DIGEST)), False)
        self.assert502(transport, stream)

    def test_absurdOriginTime(self) -> None:
        """
        A railgun-origin-time that is not a finite number >= 0 is read as
        0: the response is served, the diagnostic header well-formed.
        """
        for value in (b"inf", b"nan", b"-1", b"1e400", b"-0.5", b"x"):
            for head in (
                [(b":status", b"200"), (b"railgun-origin-time", value)],
                _fullHead((b"railgun-origin-time", value)),
            ):
                handler, stream, transport, _ = _start()
                handler.headersReceived(head, False)
                handler.dataReceived(BODY)
                handler.readConnectionLost()
                self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "), value)
                self.assertIn(BODY, transport.value(), value)
                self.assertIn(b" 0.000000 ", transport.value())
                self.assertEqual(self.flushLoggedErrors(), [])

    def test_codecWhileDeltasOff(self) -> None:
        """
        A compressed version sent to an edge with deltas off cannot be
        decoded: the edge asks again (without a base), it does not raise.
        """
        handler, stream, transport, link = _start(deltas=False)
        handler.headersReceived(
            [
                (b":status", b"200"),
                (b"railgun-body", b"full"),
                (b"railgun-codec", b"zstd"),
                (b"railgun-digest", DIGEST),
            ],
            False,
        )
        handler.dataReceived(b"not zstd")
        handler.readConnectionLost()
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(link.opened), 2)

    def test_trailersDuringVersion(self) -> None:
        """
        A second header block while a version's body arrives is trailers,
        ignored: it is not read as a new response head.
        """
        handler, stream, transport, _ = _start()
        handler.headersReceived(_fullHead(), False)
        handler.dataReceived(BODY[:100])
        handler.headersReceived([(b":status", b"404"), (b"x", b"y")], False)
        handler.dataReceived(BODY[100:])
        handler.readConnectionLost()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertTrue(transport.value().endswith(BODY))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_lengthAnnouncedNoBody(self) -> None:
        """
        A raw head that announces a Content-Length and ends the stream at
        once is a truncated response: the client's connection is aborted,
        not given a response presented as complete.
        """
        handler, stream, transport, _ = _start()
        handler.headersReceived([(b":status", b"200"), (b"content-length", b"5")], True)
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(stream.resets, [ErrorCode.PROTOCOL_ERROR])
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(
        deltas=st.booleans(),
        status=st.sampled_from([b"100", b"101", b"200", b"304", b"404", b"2x0"]),
        control=st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        b"railgun-body",
                        b"railgun-codec",
                        b"railgun-digest",
                        b"railgun-flags",
                        b"railgun-origin-time",
                        b"railgun-length",
                        b"railgun-error",
                        b"content-length",
                        b"content-encoding",
                        b"cache-control",
                    ]
                ),
                st.sampled_from(
                    [
                        b"same",
                        b"delta",
                        b"full",
                        b"raw",
                        b"identity",
                        b"zstd",
                        b"zstd-patch",
                        DIGEST,
                        b"0" * 32,
                        b"inf",
                        b"nan",
                        b"-1",
                        b"1e400",
                        b"ffffffffffffffffffff",
                        b"5",
                        b"gzip",
                        b"",
                    ]
                ),
            ),
            max_size=8,
        ),
        endStream=st.booleans(),
        body=st.sampled_from([b"", BODY, b"x" * 7]),
        trailers=st.booleans(),
    )
    def test_propertyNeverRaises(
        self,
        deltas: bool,
        status: bytes,
        control: list[tuple[bytes, bytes]],
        endStream: bool,
        body: bytes,
        trailers: bool,
    ) -> None:
        """
        Any response head and control values, any body, with or without
        trailers: the edge never raises nor logs an error, and its client
        gets a response or an aborted connection.
        """
        handler, stream, transport, link = _start(deltas)
        handler.headersReceived([(b":status", status), *control], endStream)
        if not endStream:
            if body:
                handler.dataReceived(body)
            if trailers:
                handler.headersReceived([(b":status", b"200")], False)
            handler.readConnectionLost()
        self.assertEqual(self.flushLoggedErrors(), [])
        # (A version that cannot be rebuilt is asked for again, whole.)
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 ")
            or transport.disconnecting
            or transport.disconnected
            or len(link.opened) > 1
        )


class OriginHeadTests(_HandlerBase):
    """
    The origin role's stream handler against request blocks a peer should
    not send.
    """

    def send(self, block: list[tuple[bytes, bytes]]) -> _Collector:
        collector = _Collector()
        self.dialer.openStream(collector, block, endStream=True)
        for _ in range(5):
            self.pump.flush()
            self.agent.flush()
        return collector

    def test_duplicateControlHeader(self) -> None:
        """
        A request naming its base twice is a malformed request (400), not
        an exception; nothing is fetched.
        """
        block = RequestHead(b"GET", b"http", b"www.example.test", b"/seen", [])
        collector = self.send(
            block.toLinkHeaders()
            + [(b"railgun-base", DIGEST), (b"railgun-base", DIGEST)]
        )
        head = ResponseHead.fromLinkHeaders(collector.heads[0])
        self.assertEqual(head.status, 400)
        self.assertEqual(
            splitControl(head.headers)[1][b"railgun-error"], b"bad-request"
        )
        self.assertEqual(self.seen.requests, [])
        self.assertEqual(self.flushLoggedErrors(), [])


class ParserPropertyTests(SynchronousTestCase):
    """
    The head parsers and L{splitControl} over arbitrary blocks.
    """

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        b":status",
                        b":method",
                        b":scheme",
                        b":authority",
                        b":path",
                        b"railgun-digest",
                        b"Railgun-Base",
                        b"railgun-body",
                        b"content-length",
                    ]
                )
                | st.binary(max_size=6),
                st.sampled_from(
                    [b"100", b"200", b"GET", b"http", b"a.test", b"/", b"\r\n", b""]
                )
                | st.binary(max_size=6),
            ),
            max_size=10,
        )
    )
    def test_propertyOnlyBadMessage(self, block: list[tuple[bytes, bytes]]) -> None:
        """
        Parsing a block as a response or a request head and splitting its
        control headers either succeeds or raises BadMessage; a response
        head parsed has a final status.
        """
        for parse in (ResponseHead.fromLinkHeaders, RequestHead.fromLinkHeaders):
            try:
                head = parse(block)
                splitControl(head.headers)
            except BadMessage:
                continue
            if isinstance(head, ResponseHead):
                self.assertGreaterEqual(head.status, 200)

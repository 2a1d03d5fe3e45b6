"""
Tests for L{railgun.link.connection}: the link's state machine without I/O.
No reactor, no clock, no transport: bytes are handed from one
L{LinkConnection} to another, time is a number the test sets.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from railgun.link.connection import LinkConnection
from railgun.link.errors import (
    ErrorCode,
    LinkLost,
    LinkUnavailable,
    ProtocolError,
    StreamRefused,
    StreamReset,
)
from railgun.link.events import (
    CLOSE_TRANSPORT,
    DATA_RECEIVED,
    DRAIN_STARTED,
    HEADERS_RECEIVED,
    LINK_CLOSED,
    LINK_CLOSING,
    LINK_READY,
    PONG_RECEIVED,
    STREAM_CLOSED,
    STREAM_OPENED,
)
from railgun.link.frames import (
    Data,
    FrameParser,
    GoAway,
    Hello,
    Ping,
    Pong,
    Reset,
    Settings,
    Window,
)
from railgun.link.linkstate import (
    DRAIN_TRANSITIONS,
    PHASE_TRANSITIONS,
    Drain,
    DrainInput,
    LinkPhase,
    PhaseInput,
)
from railgun.link.streamstate import (
    OVER,
    TRANSITIONS,
    StreamInput,
    StreamLife,
    StreamRecord,
    StreamState,
)

TOKEN = b"connection-token"


class Now:
    """
    The time, set by the test.
    """

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def connection(isDialer: bool, now: Now | None = None, **kw: Any) -> LinkConnection:
    return LinkConnection(
        isDialer=isDialer, token=TOKEN, now=now if now is not None else Now(), **kw
    )


def move(source: LinkConnection, target: LinkConnection) -> list[Any]:
    """
    Hand what C{source} has to send to C{target}.

    @return: C{target}'s events.
    """
    return target.receiveData(b"".join(source.dataToSend()))


def kinds(events: list[Any]) -> list[Any]:
    return [e[0] for e in events]


def frames(conn: LinkConnection) -> list[Any]:
    """
    @return: the frames C{conn} has to send, parsed.
    """
    return FrameParser(16777215, 16777215).feed(b"".join(conn.dataToSend()))


class Pair:
    """
    A dialer and an acceptor past their handshake.
    """

    def __init__(self, **acceptor: Any) -> None:
        self.now = Now()
        self.dialer = connection(True, self.now)
        self.acceptor = connection(False, self.now, **acceptor)
        self.dialer.initiateConnection()
        self.acceptorEvents = move(self.dialer, self.acceptor)
        self.dialerEvents = move(self.acceptor, self.dialer)

    def request(self, endStream: bool = True) -> tuple[StreamRecord, StreamRecord]:
        """
        Open a stream from the dialer.

        @return: its record on both sides.
        """
        record = self.dialer.openStream([(b":path", b"/")], endStream)
        (opened,) = move(self.dialer, self.acceptor)
        assert opened[0] is STREAM_OPENED
        return record, opened[1]


class TransitionTableTests(SynchronousTestCase):
    """
    The lifecycle tables: what each state accepts.
    """

    def test_streamReset(self) -> None:
        """
        Every stream state but the two ends accepts RESET; the ends accept
        nothing at all.
        """
        for life in StreamLife:
            accepted = {i for (state, i) in TRANSITIONS if state is life}
            if life in OVER:
                self.assertEqual(accepted, set())
            else:
                self.assertIn(StreamInput.RESET, accepted)

    def test_streamCleanLife(self) -> None:
        """
        Both orders of the two END_STREAMs end in CLOSED, and the public
        state follows HTTP/2's names on the way.
        """
        for order in (
            [StreamInput.QUEUE_END, StreamInput.SEND_END, StreamInput.RECV_END],
            [StreamInput.RECV_END, StreamInput.QUEUE_END, StreamInput.SEND_END],
            [StreamInput.QUEUE_END, StreamInput.RECV_END, StreamInput.SEND_END],
        ):
            record = StreamRecord(1, "r", 10, 10)
            states = []
            for event in order:
                record.transition(event)
                states.append(record.state)
            self.assertIs(record.life, StreamLife.CLOSED)
            self.assertIs(states[-1], StreamState.CLOSED)

    def test_streamRefusesImpossible(self) -> None:
        """
        An input a state cannot take raises instead of being ignored.
        """
        record = StreamRecord(1, "r", 10, 10)
        self.assertRaises(RuntimeError, record.transition, StreamInput.SEND_END)
        record.transition(StreamInput.RESET)
        self.assertRaises(RuntimeError, record.transition, StreamInput.RESET)

    def test_phases(self) -> None:
        """
        A link is ready only after its handshake, and closed only once.
        """
        self.assertEqual(
            PHASE_TRANSITIONS[(LinkPhase.HANDSHAKE, PhaseInput.HELLO)],
            LinkPhase.READY,
        )
        self.assertNotIn((LinkPhase.READY, PhaseInput.HELLO), PHASE_TRANSITIONS)
        self.assertNotIn((LinkPhase.CLOSING, PhaseInput.STOP), PHASE_TRANSITIONS)
        self.assertNotIn((LinkPhase.CLOSED, PhaseInput.LOST), PHASE_TRANSITIONS)

    def test_drains(self) -> None:
        """
        GOAWAYs sent and received combine, in either order, and repeat.
        """
        for first, second in (
            (DrainInput.SENT, DrainInput.RECEIVED),
            (DrainInput.RECEIVED, DrainInput.SENT),
        ):
            drain = DRAIN_TRANSITIONS[(Drain.NONE, first)]
            drain = DRAIN_TRANSITIONS[(drain, first)]
            self.assertIs(DRAIN_TRANSITIONS[(drain, second)], Drain.BOTH)


class HandshakeTests(SynchronousTestCase):
    """
    The HELLO exchange, bytes in and events out.
    """

    def test_ready(self) -> None:
        """
        Each side reports L{LINK_READY} once it has the other's HELLO, and
        learns its settings.
        """
        dialer = connection(True)
        acceptor = connection(False, settings=Settings(maxConcurrentStreams=3))
        dialer.initiateConnection()
        self.assertEqual(kinds(move(dialer, acceptor)), [LINK_READY])
        self.assertTrue(acceptor.isReady())
        self.assertFalse(dialer.isReady())
        self.assertEqual(kinds(move(acceptor, dialer)), [LINK_READY])
        self.assertTrue(dialer.isReady())
        self.assertEqual(dialer.peerSettings.maxConcurrentStreams, 3)

    def test_badToken(self) -> None:
        """
        A wrong token closes the link: the events say so once the state is
        final, and the GOAWAY is what is left to send.
        """
        dialer = LinkConnection(isDialer=True, token=b"wrong", now=Now())
        acceptor = connection(False)
        dialer.initiateConnection()
        events = move(dialer, acceptor)
        self.assertEqual(kinds(events), [LINK_CLOSING, CLOSE_TRANSPORT])
        self.assertIs(acceptor.phase, LinkPhase.CLOSING)
        self.assertIsInstance(acceptor.closeError, ProtocolError)
        (goAway,) = frames(acceptor)
        self.assertEqual(goAway.code, ErrorCode.AUTH_FAILED)

    def test_dataBeforeHello(self) -> None:
        """
        A stream frame before HELLO is a protocol error.
        """
        acceptor = connection(False)
        events = acceptor.receiveData(Data(1, b"x").encode())
        self.assertEqual(kinds(events), [LINK_CLOSING, CLOSE_TRANSPORT])
        self.assertFalse(acceptor.isActive())

    def test_openBeforeReady(self) -> None:
        """
        No stream opens before the handshake.
        """
        self.assertRaises(LinkUnavailable, connection(True).openStream, [])


class StreamTests(SynchronousTestCase):
    """
    Streams through two connections.
    """

    def test_requestResponse(self) -> None:
        """
        A request and its answer cross as events; the stream is over on
        both sides once both END_STREAMs are written, and only then
        reported closed.
        """
        pair = Pair()
        mine, theirs = pair.request(endStream=True)
        self.assertEqual(theirs.requestId, mine.requestId)
        self.assertIs(theirs.state, StreamState.HALF_CLOSED_REMOTE)
        self.assertIs(mine.state, StreamState.HALF_CLOSED_LOCAL)

        scheduler = pair.acceptor.scheduler
        scheduler.sendHeaders(theirs, [(b":status", b"200")], False)
        scheduler.sendData(theirs, b"body")
        scheduler.endStream(theirs)
        self.assertIs(theirs.life, StreamLife.HALF_CLOSED_REMOTE_ENDING)
        wire = b"".join(pair.acceptor.dataToSend())
        self.assertEqual(kinds(pair.acceptor.takeEvents()), [STREAM_CLOSED])
        self.assertIs(theirs.state, StreamState.CLOSED)
        self.assertEqual(pair.acceptor.streams, {})

        events = pair.dialer.receiveData(wire)
        self.assertEqual(kinds(events), [HEADERS_RECEIVED, DATA_RECEIVED])
        self.assertEqual(events[0][2:], ([(b":status", b"200")], False))
        self.assertEqual(events[1][2:], (b"body", True))
        self.assertIs(mine.life, StreamLife.CLOSED)
        self.assertEqual(pair.dialer.streams, {})
        self.assertEqual(mine.counters.received, 4)

    def test_peerReset(self) -> None:
        """
        A RESET from the peer reports the stream closed with a remote
        L{StreamReset}.
        """
        pair = Pair()
        mine, theirs = pair.request()
        pair.acceptor.resetStream(theirs, ErrorCode.CANCEL)
        self.assertEqual(pair.acceptor.takeEvents(), [])
        ((kind, record, reason),) = move(pair.acceptor, pair.dialer)
        self.assertEqual((kind, record), (STREAM_CLOSED, mine))
        self.assertIsInstance(reason, StreamReset)
        self.assertTrue(reason.remote)
        self.assertIs(mine.life, StreamLife.RESET)

    def test_dataAfterEndResets(self) -> None:
        """
        DATA after the peer's END_STREAM resets the stream (STREAM_CLOSED)
        and reports it closed by us.
        """
        pair = Pair()
        mine, theirs = pair.request(endStream=True)
        move(pair.dialer, pair.acceptor)
        events = pair.acceptor.receiveData(Data(mine.streamId, b"late").encode())
        self.assertEqual(kinds(events), [STREAM_CLOSED])
        self.assertFalse(events[0][2].remote)
        (reset,) = frames(pair.acceptor)[-1:]
        self.assertEqual((reset.streamId, reset.code), (1, ErrorCode.STREAM_CLOSED))

    def test_concurrencyLimit(self) -> None:
        """
        Past the peer's MAX_CONCURRENT_STREAMS no stream opens.
        """
        pair = Pair(settings=Settings(maxConcurrentStreams=1))
        pair.request(endStream=False)
        self.assertRaises(LinkUnavailable, pair.dialer.openStream, [])

    def test_connectionWindow(self) -> None:
        """
        DATA beyond the connection window is a FLOW_CONTROL_ERROR.
        """
        pair = Pair(settings=Settings(connectionWindow=65535))
        mine, theirs = pair.request(endStream=False)
        pair.acceptor.receiveData(Data(mine.streamId, b"x" * 60000).encode())
        events = pair.acceptor.receiveData(Data(mine.streamId, b"x" * 6000).encode())
        self.assertEqual(kinds(events), [LINK_CLOSING, STREAM_CLOSED, CLOSE_TRANSPORT])
        (goAway,) = [f for f in frames(pair.acceptor) if isinstance(f, GoAway)]
        self.assertEqual(goAway.code, ErrorCode.FLOW_CONTROL_ERROR)

    def test_streamCreditAfterConsumption(self) -> None:
        """
        Stream credit goes back once half the stream window was consumed,
        not when the bytes merely arrived.
        """
        pair = Pair(settings=Settings(initialStreamWindow=1000))
        mine, theirs = pair.request(endStream=False)
        pair.acceptor.receiveData(Data(mine.streamId, b"x" * 600).encode())
        self.assertEqual(frames(pair.acceptor), [])
        pair.acceptor.acknowledgeReceivedData(theirs, 600)
        self.assertEqual(frames(pair.acceptor), [Window(mine.streamId, 600)])


class LifecycleTests(SynchronousTestCase):
    """
    Drain, close and liveness, decided without timers.
    """

    def test_drainWithoutStreams(self) -> None:
        """
        A graceful GOAWAY with nothing open closes at once, GOAWAY first.
        """
        pair = Pair()
        pair.acceptor.goAway()
        self.assertEqual(
            kinds(pair.acceptor.takeEvents()),
            [DRAIN_STARTED, LINK_CLOSING, CLOSE_TRANSPORT],
        )
        (goAway,) = frames(pair.acceptor)
        self.assertEqual(goAway.code, ErrorCode.NO_ERROR)

    def test_drainWaitsForStreams(self) -> None:
        """
        A drain refuses new peer streams and closes when the last open one
        ends.
        """
        pair = Pair()
        mine, theirs = pair.request(endStream=True)
        pair.acceptor.goAway()
        self.assertEqual(kinds(pair.acceptor.takeEvents()), [DRAIN_STARTED])
        events = move(pair.acceptor, pair.dialer)
        self.assertEqual(events, [])
        self.assertTrue(pair.dialer.isDraining())
        self.assertRaises(LinkUnavailable, pair.dialer.openStream, [])
        pair.acceptor.scheduler.endStream(theirs)
        pair.acceptor.dataToSend()
        self.assertEqual(
            kinds(pair.acceptor.takeEvents()),
            [STREAM_CLOSED, LINK_CLOSING, CLOSE_TRANSPORT],
        )

    def test_errorGoAwayAfterGracefulClosesOnce(self) -> None:
        """
        A GOAWAY with an error after a graceful one, refusing the stream the
        drain waited for, asks for one close of the transport (the drain
        ending on the way does not ask again: 4e6f61d's sibling, ac8c52b).
        """
        pair = Pair()
        mine, theirs = pair.request(endStream=False)
        events = pair.dialer.receiveData(
            GoAway(1, ErrorCode.NO_ERROR, "drain").encode()
            + GoAway(0, ErrorCode.INTERNAL_ERROR, "gone").encode()
        )
        self.assertEqual(kinds(events), [LINK_CLOSING, STREAM_CLOSED, CLOSE_TRANSPORT])
        self.assertIsInstance(events[1][2], StreamRefused)

    def test_pingPong(self) -> None:
        """
        One PING at a time; its PONG gives the round trip on the caller's
        time.
        """
        pair = Pair()
        self.assertTrue(pair.dialer.ping())
        self.assertFalse(pair.dialer.ping())
        move(pair.dialer, pair.acceptor)
        pair.now.value += 0.25
        (pong,) = move(pair.acceptor, pair.dialer)
        self.assertEqual(pong, (PONG_RECEIVED, 0.25))
        self.assertEqual(pair.dialer.liveness.rtt, 0.25)

    def test_pingFlood(self) -> None:
        """
        More PINGs than allowed in one second of the caller's time is
        ENHANCE_YOUR_CALM; spread over time they are fine.
        """
        pair = Pair(maxPingsPerSecond=2)
        ping = Ping(b"12345678").encode()
        for _ in range(4):
            pair.now.value += 0.6
            self.assertEqual(pair.acceptor.receiveData(ping), [])
        events = pair.acceptor.receiveData(ping * 3)
        self.assertEqual(kinds(events), [LINK_CLOSING, CLOSE_TRANSPORT])
        self.assertEqual(pair.acceptor.closeError.code, ErrorCode.ENHANCE_YOUR_CALM)

    def test_pingTimeout(self) -> None:
        """
        A PING timeout fails the streams and asks for an abort.
        """
        pair = Pair()
        mine, _ = pair.request(endStream=False)
        pair.dialer.pingTimedOut(30)
        events = pair.dialer.takeEvents()
        self.assertEqual(kinds(events), [LINK_CLOSING, STREAM_CLOSED, CLOSE_TRANSPORT])
        self.assertIsInstance(events[1][2], LinkLost)
        self.assertEqual(events[2], (CLOSE_TRANSPORT, True))

    def test_controlOverflow(self) -> None:
        """
        Control frames piling up while output is paused abort the link.
        """
        pair = Pair()
        pair.acceptor.scheduler.paused = True
        pair.acceptor.scheduler.maxControlBytes = 100
        events = pair.acceptor.receiveData(Ping(b"12345678").encode() * 10)
        self.assertEqual(kinds(events), [LINK_CLOSING, CLOSE_TRANSPORT])
        self.assertEqual(events[-1], (CLOSE_TRANSPORT, True))

    def test_connectionLost(self) -> None:
        """
        A lost transport fails every stream with L{LinkLost}; the table is
        empty when the events are taken.
        """
        pair = Pair()
        pair.request(endStream=False)
        pair.request(endStream=False)
        pair.dialer.connectionLost("gone")
        events = pair.dialer.takeEvents()
        self.assertEqual(kinds(events), [STREAM_CLOSED, STREAM_CLOSED, LINK_CLOSED])
        self.assertEqual(pair.dialer.streams, {})
        self.assertIs(pair.dialer.phase, LinkPhase.CLOSED)

    def test_refusedAboveLast(self) -> None:
        """
        A stream the peer refuses is reported closed with L{StreamRefused}.
        """
        pair = Pair()
        mine, _ = pair.request(endStream=False)
        events = pair.dialer.receiveData(
            Reset(mine.streamId, ErrorCode.REFUSED_STREAM).encode()
        )
        self.assertIsInstance(events[0][2], StreamRefused)

    def test_secondHello(self) -> None:
        """
        A second HELLO is a protocol error.
        """
        pair = Pair()
        events = pair.dialer.receiveData(Hello(1, b"", Settings()).encode())
        self.assertEqual(kinds(events), [LINK_CLOSING, CLOSE_TRANSPORT])
        (goAway,) = frames(pair.dialer)
        self.assertEqual(goAway.code, ErrorCode.PROTOCOL_ERROR)

    def test_pong(self) -> None:
        """
        A PONG answering no PING of ours is ignored.
        """
        pair = Pair()
        self.assertEqual(pair.dialer.receiveData(Pong(b"00000000").encode()), [])


class LayeringTests(SynchronousTestCase):
    """
    The connection stands apart from Twisted's I/O.
    """

    def test_noReactorNoTransport(self) -> None:
        """
        The connection's modules, followed through their imports within the
        package, never import the link's Twisted protocol, its stream
        transport, its factories, a reactor or Twisted's protocols.
        """
        import ast
        from pathlib import Path

        import railgun.link

        package = Path(railgun.link.__file__).parent
        seen: set[str] = set()
        outside: set[str] = set()
        todo = ["connection"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            tree = ast.parse((package / f"{name}.py").read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    if node.level == 1:
                        todo.append(node.module or "")
                    else:
                        outside.add(node.module or "")
                elif isinstance(node, ast.Import):
                    outside.update(alias.name for alias in node.names)
        self.assertEqual(seen & {"protocol", "stream", "factory", "__init__"}, set())
        self.assertEqual(
            {m for m in outside if m.startswith(("twisted.internet", "railgun"))},
            {"twisted.internet.interfaces"},  # counting.py: interface names
        )

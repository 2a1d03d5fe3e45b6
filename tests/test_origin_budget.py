"""
What the origin role holds for streams whose peer reads nothing: a link
peer that announces a stream window of 0 and opens many streams must not
make it hold a version payload per stream outside its memory budget. In
memory: two links joined by L{twisted.test.iosim}, origin responses written
by the test in chunks as a socket would deliver them (nothing while paused).
"""

from __future__ import annotations

import base64
import random

from twisted.internet.task import Clock
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from railgun.config import parseOriginMap
from railgun.delta.codec import defaultRegistry
from railgun.link.factory import LinkClientFactory, LinkServerFactory
from railgun.link.frames import Settings
from railgun.link.protocol import LinkProtocol
from railgun.origin.handler import OriginContext, OriginStreamHandler
from railgun.stores.memory import MemoryVersionStore
from railgun.upstream.client import originClient
from tests.test_origin_handler import TOKEN, _Collector
from tests.test_origin_robustness import GET, _ScriptedAgent

#: bytes the test's origin delivers per read, as a socket read would.
CHUNK = 16 * 1024
#: the body of every response: text (a version), about 3/4 incompressible.
BODY = base64.b64encode(random.Random(11).randbytes(180 * 1024))
BUDGET = 1024 * 1024
MAX_SIZE = 256 * 1024
STREAMS = 48


class _BudgetCase(SynchronousTestCase):
    """
    An origin role with a 1 MiB held budget, linked in memory to a peer
    announcing the stream window L{window}; its origin answers every
    request with a version-eligible body of 240 KB.
    """

    #: the stream window the peer announces.
    window = 0

    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = _ScriptedAgent()
        self.context = OriginContext(
            origins=parseOriginMap(["www.example.test=http://origin.internal:8000"]),
            client=originClient(self.agent),
            clock=self.clock,
            responseTimeout=10.0,
            store=MemoryVersionStore(clock=self.clock),
            codecs=defaultRegistry(),
            deltaMaxSize=MAX_SIZE,
            heldBudget=BUDGET,
        )
        server = LinkServerFactory(
            token=TOKEN,
            clock=self.clock,
            pingInterval=0,
            streamFactory=lambda stream: OriginStreamHandler(self.context),
        )
        client = LinkClientFactory(
            token=TOKEN,
            clock=self.clock,
            pingInterval=0,
            settings=Settings(initialStreamWindow=self.window),
        )
        self.dialer, self.acceptor, self.pump = connectedServerAndClient(
            lambda: server.buildProtocol(None),
            lambda: client.buildProtocol(None),
            clock=self.clock,
        )
        self.pump.flush()

    def queuedBeyond(self, link: LinkProtocol, allowance: int) -> int:
        """
        @return: the bytes the origin role's streams hold queued for the
            peer beyond C{allowance} per stream.
        """
        return sum(
            max(0, record.outboundBytes - allowance)
            for record in link.connection.streams.values()
        )


class UnreadStreamsTests(_BudgetCase):
    """
    A peer with stream window 0 opens L{STREAMS} streams.
    """

    def test_heldWithinBudget(self) -> None:
        """
        Whatever the origin role queues for streams the peer does not read
        counts against its held budget: beyond the budget, responses stream
        raw and the origin read pauses, so what the streams hold past one
        high-water mark and one read each stays within the budget (plus one
        version); once the peer resets the streams, nothing is held.
        """
        streams = []
        for _ in range(STREAMS):
            collector = _Collector()
            streams.append(
                self.dialer.openStream(collector, GET.toLinkHeaders(), endStream=True)
            )
        self.pump.flush()
        self.assertEqual(len(self.agent.requests), STREAMS)
        for index in range(STREAMS):
            response, transport = self.agent.respond(
                index, 200, {b"content-type": [b"text/plain"]}
            )
            offset = 0
            while offset < len(BODY) and transport.producerState == "producing":
                response._bodyDataReceived(BODY[offset : offset + CHUNK])
                offset += CHUNK
            if offset >= len(BODY):
                response._bodyDataFinished()
            self.pump.flush()
        allowance = self.acceptor.streamHighWater + CHUNK
        self.assertLessEqual(
            self.queuedBeyond(self.acceptor, allowance), BUDGET + MAX_SIZE
        )
        self.assertLessEqual(
            self.queuedBeyond(self.acceptor, 0), BUDGET + MAX_SIZE + STREAMS * allowance
        )
        self.assertGreater(self.context.held, 0)
        for stream in streams:
            stream.reset()
        self.pump.flush()
        self.assertEqual(self.context.held, 0)
        self.assertEqual(self.flushLoggedErrors(), [])


class LateBodyTests(_BudgetCase):
    """
    Body bytes the origin server delivers after the stream is gone.
    """

    window = 1 << 20

    def test_lateBytesNotHeld(self) -> None:
        """
        Origin body bytes arriving after the edge reset the stream (the
        origin read is stopped, but bytes already read are still delivered)
        are dropped, not collected against the held budget.
        """
        stream = self.dialer.openStream(
            _Collector(), GET.toLinkHeaders(), endStream=True
        )
        self.pump.flush()
        response, transport = self.agent.respond(
            0, 200, {b"content-type": [b"text/plain"]}
        )
        response._bodyDataReceived(BODY[:CHUNK])
        self.pump.flush()
        self.assertEqual(self.context.held, CHUNK)
        stream.reset()
        self.pump.flush()
        self.assertEqual(self.context.held, 0)
        response._bodyDataReceived(BODY[CHUNK : 2 * CHUNK])
        self.assertEqual(self.context.held, 0)
        self.assertEqual(self.flushLoggedErrors(), [])


class SlowReaderTests(_BudgetCase):
    """
    A peer with a small stream window whose streams stop reading, then
    read again.
    """

    window = 16 * 1024

    def test_releasedWhenRead(self) -> None:
        """
        A payload the peer does not take counts against the budget while
        the stream holds it back; once the peer reads again it crosses
        whole, and nothing stays counted.
        """
        collectors = []
        streams = []
        for _ in range(3):
            collector = _Collector()
            collectors.append(collector)
            stream = self.dialer.openStream(
                collector, GET.toLinkHeaders(), endStream=True
            )
            stream.pauseProducing()  # the peer's reader takes nothing
            streams.append(stream)
        self.pump.flush()
        for index in range(3):
            response, _ = self.agent.respond(
                index, 200, {b"content-type": [b"text/plain"]}
            )
            response._bodyDataReceived(BODY)
            response._bodyDataFinished()
            self.pump.flush()
        self.assertGreater(self.context.held, 0)
        for stream in streams:
            stream.resumeProducing()
        for _ in range(50):
            self.pump.flush()
        self.assertEqual(self.context.held, 0)
        for collector in collectors:
            self.assertTrue(collector.ended)
            self.assertGreater(len(b"".join(collector.body)), 0)
        self.assertEqual(self.acceptor.openStreamCount, 0)
        self.assertEqual(self.flushLoggedErrors(), [])

"""
Tests for L{bench.wan}: the scheduling core with plain numbers, the relay
glue with a fake clock and in-memory transports, and one real relay on
loopback.
"""

from __future__ import annotations

import math
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from bench.wan import (
    Bottleneck,
    Direction,
    Release,
    WanPath,
    WanProfile,
    WanRelayFactory,
    WanRelayProtocol,
    _argumentParser,
    _parseTarget,
    _profileFromArguments,
    listenWan,
    parseDuration,
    parseRate,
)

IW = 10 * 1460


def _times(releases: list[Release]) -> list[float]:
    return [r.at for r in releases]


def _sizes(releases: list[Release]) -> list[int]:
    return [r.size for r in releases]


class WanProfileTests(SynchronousTestCase):
    """
    Tests for L{WanProfile}.
    """

    def test_delaysDefaultToHalfTheRtt(self) -> None:
        """
        Without explicit one-way delays each direction gets half the RTT.
        """
        profile = WanProfile(rtt=0.1)
        self.assertEqual(profile.delay(Direction.UP), 0.05)
        self.assertEqual(profile.delay(Direction.DOWN), 0.05)

    def test_oneDelayImpliesTheOther(self) -> None:
        """
        Giving one one-way delay makes the other the rest of the RTT.
        """
        profile = WanProfile(rtt=0.1, upDelay=0.03)
        self.assertAlmostEqual(profile.delay(Direction.DOWN), 0.07)
        profile = WanProfile(rtt=0.1, downDelay=0.03)
        self.assertAlmostEqual(profile.delay(Direction.UP), 0.07)

    def test_delaysMustAddUpToRtt(self) -> None:
        """
        One-way delays that do not add up to the RTT are rejected.
        """
        self.assertRaises(ValueError, WanProfile, rtt=0.1, upDelay=0.03, downDelay=0.03)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, upDelay=0.2)

    def test_badValuesRejected(self) -> None:
        """
        Negative, zero or infinite values are rejected with a ValueError.
        """
        self.assertRaises(ValueError, WanProfile, rtt=-0.1)
        self.assertRaises(ValueError, WanProfile, rtt=math.inf)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, rateBps=0)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, rateBps=math.inf)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, mss=0)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, initialSegments=0)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, idleRestart=0)
        self.assertRaises(ValueError, WanProfile, rtt=0.1, highWater=0)

    def test_windowCapIsBdp(self) -> None:
        """
        With a rate and no maximum, the window cap is the bandwidth-delay
        product rounded up to whole segments.
        """
        profile = WanProfile(rtt=0.1, rateBps=20e6)
        self.assertEqual(profile.bdp(), 250_000)
        self.assertEqual(profile.windowCap(), 172 * 1460)

    def test_windowCapExplicit(self) -> None:
        """
        An explicit maximum window wins, but never goes below the initial one.
        """
        self.assertEqual(WanProfile(rtt=0.1, maxWindow=50_000).windowCap(), 50_000)
        self.assertEqual(WanProfile(rtt=0.1, maxWindow=1000).windowCap(), IW)
        self.assertIsNone(WanProfile(rtt=0.1).windowCap())

    def test_queueLimitCoversBdp(self) -> None:
        """
        The default high-water mark is 1 MiB or twice the BDP if larger.
        """
        self.assertEqual(WanProfile(rtt=0.1).queueLimit(), 1 << 20)
        self.assertEqual(WanProfile(rtt=0.1, rateBps=1e9).queueLimit(), 25_000_000)
        self.assertEqual(WanProfile(rtt=0.1, highWater=4096).queueLimit(), 4096)


class WanPathTests(SynchronousTestCase):
    """
    Tests for L{WanPath}, the scheduling core, with plain numbers.
    """

    def test_handshakeChargesUp(self) -> None:
        """
        The client's first byte leaves one RTT after accept and arrives a
        one-way delay later.
        """
        path = WanPath.forDirection(WanProfile(rtt=0.1), Direction.UP, 10.0)
        [release] = path.schedule(10.0, 100)
        self.assertAlmostEqual(release.at, 10.15)
        self.assertEqual(release.size, 100)

    def test_handshakeChargesDown(self) -> None:
        """
        The target's first byte cannot reach the client before accept plus
        two RTTs, whatever the split of the delays.
        """
        profile = WanProfile(rtt=0.1, upDelay=0.03)
        path = WanPath.forDirection(profile, Direction.DOWN, 10.0)
        [release] = path.schedule(10.0, 100)
        self.assertAlmostEqual(release.at, 10.2)

    def test_requestResponseTakesTwoRtts(self) -> None:
        """
        A request and its immediate response over a new connection take two
        RTTs; a second exchange on the same connection takes one.
        """
        profile = WanProfile(rtt=0.1, upDelay=0.02)
        up = WanPath.forDirection(profile, Direction.UP, 0.0)
        down = WanPath.forDirection(profile, Direction.DOWN, 0.0)
        [request] = up.schedule(0.0, 300)
        [response] = down.schedule(request.at, 3000)
        self.assertAlmostEqual(response.at, 0.2)
        [request] = up.schedule(1.0, 300)
        [response] = down.schedule(request.at, 3000)
        self.assertAlmostEqual(response.at, 1.1)

    def test_noHandshake(self) -> None:
        """
        With the handshake off only the one-way delay applies.
        """
        profile = WanProfile(rtt=0.1, handshake=False)
        path = WanPath.forDirection(profile, Direction.DOWN, 0.0)
        self.assertEqual(_times(path.schedule(0.0, 100)), [0.05])

    def test_delayAfterHandshake(self) -> None:
        """
        Once the handshake is paid, bytes arrive exactly one one-way delay
        after they were handed over.
        """
        profile = WanProfile(rtt=0.1, downDelay=0.08)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        path.schedule(0.0, 10)
        self.assertAlmostEqual(path.schedule(0.5, 10)[0].at, 0.52)
        self.assertAlmostEqual(path.schedule(0.7, 10)[0].at, 0.72)

    def test_bandwidthSerializes(self) -> None:
        """
        Each piece arrives when its last byte has been transmitted at the
        rate, plus the delay; a piece handed over while the link is busy
        waits for the link.
        """
        profile = WanProfile(rtt=0.02, rateBps=8e6, slowStart=False, handshake=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        releases = path.schedule(0.0, 5000)
        self.assertEqual(_sizes(releases), [1460, 1460, 1460, 620])
        for got, sent in zip(_times(releases), [1460, 2920, 4380, 5000], strict=True):
            self.assertAlmostEqual(got, sent / 1e6 + 0.01)
        [late] = path.schedule(0.001, 1000)
        self.assertAlmostEqual(late.at, 0.006 + 0.01)
        [idle] = path.schedule(1.0, 1000)
        self.assertAlmostEqual(idle.at, 1.001 + 0.01)

    def test_slowStartDoublesPerRound(self) -> None:
        """
        A bulk transfer gets 10 segments in the first round, then twice as
        much in each following round.
        """
        profile = WanProfile(rtt=0.1, handshake=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        releases = path.schedule(0.0, 200_000)
        self.assertEqual(_sizes(releases), [IW, 2 * IW, 4 * IW, 200_000 - 7 * IW])
        for got, want in zip(_times(releases), [0.05, 0.15, 0.25, 0.35], strict=True):
            self.assertAlmostEqual(got, want)
        self.assertEqual(path.cwnd, 8 * IW)

    def test_slowStartAcrossWrites(self) -> None:
        """
        The window counts bytes per round, not per write: small writes in the
        same round share it.
        """
        profile = WanProfile(rtt=0.1, handshake=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        self.assertEqual(_times(path.schedule(0.0, IW - 100)), [0.05])
        self.assertEqual(_sizes(path.schedule(0.01, 1000)), [100, 900])
        self.assertAlmostEqual(path.schedule(0.02, 10)[0].at, 0.15)

    def test_applicationLimitedDoesNotGrow(self) -> None:
        """
        Rounds that do not fill the window leave it as it is.
        """
        profile = WanProfile(rtt=0.1, handshake=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        for i in range(10):
            path.schedule(i * 0.1, 1000)
        self.assertEqual(path.cwnd, IW)

    def test_idleRestart(self) -> None:
        """
        After a second without sending the window falls back to 10 segments;
        a shorter pause keeps it.
        """
        profile = WanProfile(rtt=0.1, handshake=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        path.schedule(0.0, 100_000)
        self.assertEqual(path.cwnd, 4 * IW)
        # The last round left at 0.2; 0.9 s later the window is intact.
        releases = path.schedule(1.1, 4 * IW)
        self.assertEqual(_sizes(releases), [4 * IW])
        # Sent at 1.1, idle from there to 2.2: back to the initial window.
        releases = path.schedule(2.2, 2 * IW)
        self.assertEqual(_sizes(releases), [IW, IW])
        self.assertAlmostEqual(releases[1].at, 2.35)

    def test_idleRestartDisabled(self) -> None:
        """
        With an infinite idle restart the window survives any pause.
        """
        profile = WanProfile(rtt=0.1, handshake=False, idleRestart=math.inf)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        path.schedule(0.0, 100_000)
        self.assertEqual(_sizes(path.schedule(100.0, 4 * IW)), [4 * IW])

    def test_windowCap(self) -> None:
        """
        The window stops growing at the cap.
        """
        profile = WanProfile(rtt=0.1, handshake=False, maxWindow=30_000)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        releases = path.schedule(0.0, 130_000)
        self.assertEqual(
            _sizes(releases), [IW, 2 * IW, 30_000, 30_000, 130_000 - 3 * IW - 60_000]
        )
        self.assertEqual(path.cwnd, 30_000)

    def test_bdpCapGivesFullRate(self) -> None:
        """
        With the default cap (the BDP) a long transfer ends up at the link
        rate: a megabyte after slow start takes about a megabyte's
        serialization time.
        """
        profile = WanProfile(rtt=0.05, rateBps=80e6, handshake=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        path.schedule(0.0, 5_000_000)
        self.assertEqual(path.cwnd, profile.windowCap())
        start = path.schedule(10.0, 10)[-1].at
        end = path.schedule(10.0, 1_000_000)[-1].at
        # 1 MB at 10 MB/s is 0.1 s; the window drops to IW after the idle
        # second, so slow start adds a few rounds.
        self.assertGreaterEqual(end - start, 0.1)
        self.assertLess(end - start, 0.1 + 5 * 0.05)

    def test_rateBatchesPieces(self) -> None:
        """
        A fast link moves about one piece per millisecond, not one per
        segment.
        """
        profile = WanProfile(rtt=0.01, rateBps=1e9, slowStart=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        releases = path.schedule(0.0, 1_000_000)
        self.assertEqual(_sizes(releases), [125_000] * 8)

    def test_unlimitedRateMergesRound(self) -> None:
        """
        Without a rate limit a round's bytes arrive together, in one piece.
        """
        profile = WanProfile(rtt=0.1, slowStart=False)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        [release] = path.schedule(0.0, 1_000_000)
        self.assertAlmostEqual(release.at, 0.15)
        self.assertEqual(release.size, 1_000_000)

    def test_arrivalsNeverDecrease(self) -> None:
        """
        Bytes handed over later never arrive earlier, even when an early
        write waits for the window.
        """
        profile = WanProfile(rtt=0.1, rateBps=10e6)
        path = WanPath.forDirection(profile, Direction.DOWN, 0.0)
        times: list[float] = []
        for i in range(200):
            times += _times(path.schedule(i * 0.003, 3000 + 97 * i))
        self.assertEqual(times, sorted(times))

    @settings(max_examples=200, deadline=None)
    @given(
        rtt=st.floats(0.0, 0.5),
        rate=st.one_of(st.none(), st.floats(1e4, 1e10)),
        slowStart=st.booleans(),
        writes=st.lists(
            st.tuples(st.floats(0.0, 2.0), st.integers(0, 200_000)), max_size=30
        ),
    )
    def test_scheduleInvariants(
        self,
        rtt: float,
        rate: float | None,
        slowStart: bool,
        writes: list[tuple[float, int]],
    ) -> None:
        """
        For any writes, the pieces carry exactly the bytes handed over, never
        arrive before the handshake and delay allow, and never go backwards.
        """
        profile = WanProfile(rtt=rtt, rateBps=rate, slowStart=slowStart)
        path = WanPath.forDirection(profile, Direction.DOWN, 0.0)
        now = 0.0
        last = -1.0
        for gap, size in writes:
            now += gap
            releases = path.schedule(now, size)
            self.assertEqual(sum(_sizes(releases)), size)
            for release in releases:
                self.assertGreater(release.size, 0)
                self.assertGreaterEqual(
                    release.at, max(now, 1.5 * rtt) + rtt / 2 - 1e-9
                )
                self.assertGreaterEqual(release.at, last)
                last = release.at
            self.assertGreaterEqual(path.end(now), last)

    def test_endFollowsData(self) -> None:
        """
        A FIN arrives no earlier than the data sent before it, nor before
        the handshake allows.
        """
        profile = WanProfile(rtt=0.1)
        path = WanPath.forDirection(profile, Direction.UP, 0.0)
        self.assertAlmostEqual(path.end(0.0), 0.15)
        last = path.schedule(0.0, 100_000)[-1].at
        self.assertAlmostEqual(path.end(0.0), last)
        self.assertAlmostEqual(path.end(5.0), 5.05)


class BottleneckTests(SynchronousTestCase):
    """
    Tests for L{Bottleneck}, a shared link's busy timeline.
    """

    def test_freeLinkStartsAtOnce(self) -> None:
        """
        On an idle link a transmission starts when asked.
        """
        link = Bottleneck()
        self.assertEqual(link.reserve(1.0, 0.01), 1.0)

    def test_busyLinkSerializes(self) -> None:
        """
        A transmission asked for while the link is busy starts when the
        link frees up.
        """
        link = Bottleneck()
        link.reserve(1.0, 0.01)
        self.assertAlmostEqual(link.reserve(1.005, 0.01), 1.01)
        self.assertAlmostEqual(link.reserve(1.0, 0.01), 1.02)

    def test_gapBeforeLaterBookingIsUsed(self) -> None:
        """
        A booking for a later time (a later slow-start round) leaves the
        link free until then: a short piece fits before it, a long one
        waits until after it.
        """
        link = Bottleneck()
        link.reserve(1.1, 0.01)
        self.assertEqual(link.reserve(1.0, 0.05), 1.0)
        self.assertAlmostEqual(link.reserve(1.05, 0.06), 1.11)
        self.assertAlmostEqual(link.reserve(1.05, 0.04), 1.05)

    def test_forgetAndMergeKeepItShort(self) -> None:
        """
        Back-to-back bookings merge into one interval, and intervals that
        ended are forgotten.
        """
        link = Bottleneck()
        for i in range(100):
            link.reserve(i * 0.001, 0.001)
        self.assertEqual(link.intervals, 1)
        link.reserve(5.0, 0.001)
        self.assertEqual(link.intervals, 2)
        link.forget(1.0)
        self.assertEqual(link.intervals, 1)

    @given(
        st.lists(
            st.tuples(
                st.floats(min_value=0, max_value=1),
                st.floats(min_value=1e-4, max_value=0.1),
            ),
            min_size=1,
            max_size=40,
        )
    )
    @settings(max_examples=200, deadline=None)
    def test_bookingsNeverOverlap(self, asks: list[tuple[float, float]]) -> None:
        """
        Whatever is asked, no two transmissions overlap and none starts
        before it was asked for.
        """
        link = Bottleneck()
        booked = []
        for earliest, duration in asks:
            start = link.reserve(earliest, duration)
            self.assertGreaterEqual(start, earliest)
            booked.append((start, start + duration))
        booked.sort()
        for (_, end), (start, _) in zip(booked, booked[1:], strict=False):
            self.assertLessEqual(end, start + 1e-6)

    def test_pathsShareTheRate(self) -> None:
        """
        Two connections' paths over one bottleneck share its rate: together
        they take as long as their bytes at the rate, where separate links
        would each have taken half that.
        """
        profile = WanProfile(
            rtt=0.02,
            rateBps=8e6,
            slowStart=False,
            handshake=False,
            sharedBottleneck=True,
        )
        link = Bottleneck()
        first = WanPath.forDirection(profile, Direction.DOWN, 0.0, link)
        second = WanPath.forDirection(profile, Direction.DOWN, 0.0, link)
        a = first.schedule(0.0, 10_000)
        b = second.schedule(0.0, 10_000)
        self.assertAlmostEqual(max(_times(a + b)), 20_000 / 1e6 + 0.01)
        alone = WanPath.forDirection(profile, Direction.DOWN, 0.0)
        self.assertAlmostEqual(
            max(_times(alone.schedule(0.0, 10_000))), 10_000 / 1e6 + 0.01
        )

    def test_noBottleneckWithoutRate(self) -> None:
        """
        Without a rate limit there is nothing to share: the path ignores the
        bottleneck.
        """
        profile = WanProfile(rtt=0.02, slowStart=False, handshake=False)
        link = Bottleneck()
        path = WanPath.forDirection(profile, Direction.DOWN, 0.0, link)
        path.schedule(0.0, 10_000)
        self.assertEqual(link.intervals, 0)


class _Transport(StringTransport):
    """
    A L{StringTransport} that records a half-close, as TCP transports allow.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class _Relay:
    """
    One relayed connection on a L{MemoryReactorClock}, with in-memory
    transports on both sides.
    """

    def __init__(self, profile: WanProfile, connectTarget: bool = True) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(100.0)
        self.factory = WanRelayFactory(self.reactor, "127.0.0.1", 8443, profile)
        self.relay = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        self.client = _Transport()
        self.relay.makeConnection(self.client)
        self.target = _Transport()
        self.targetProtocol: Any = None
        if connectTarget:
            self.connectTarget()

    def connectTarget(self) -> None:
        targetFactory = self.reactor.tcpClients[0][2]
        self.targetProtocol = targetFactory.buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 8443)
        )
        self.targetProtocol.makeConnection(self.target)

    def fromTarget(self, data: bytes) -> None:
        assert self.targetProtocol is not None
        self.targetProtocol.dataReceived(data)


class WanRelayTests(SynchronousTestCase):
    """
    Tests for the relay glue with a fake clock and in-memory transports.
    """

    def test_interfaces(self) -> None:
        """
        The relay is a half-closeable protocol and registers a push producer
        on each side.
        """
        r = _Relay(WanProfile(rtt=0.1))
        self.assertTrue(verifyObject(IHalfCloseableProtocol, r.relay))
        self.assertTrue(r.client.streaming)
        self.assertTrue(verifyObject(IPushProducer, r.client.producer))
        self.assertTrue(r.target.streaming)
        self.assertTrue(verifyObject(IPushProducer, r.target.producer))

    def test_dialsTarget(self) -> None:
        """
        Each accepted connection dials the configured target.
        """
        r = _Relay(WanProfile(rtt=0.1), connectTarget=False)
        [(host, port, _, _, _)] = r.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 8443))
        self.assertEqual(r.factory.connections, 1)
        self.assertEqual(r.factory.openConnections, 1)

    def test_upArrivesAfterHandshakeAndDelay(self) -> None:
        """
        Client bytes reach the target one RTT plus the up delay after
        accept, not a moment earlier.
        """
        r = _Relay(WanProfile(rtt=0.1, upDelay=0.04))
        r.relay.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        r.reactor.advance(0.139)
        self.assertEqual(r.target.value(), b"")
        r.reactor.advance(0.001)
        self.assertEqual(r.target.value(), b"GET / HTTP/1.1\r\n\r\n")

    def test_downArrivesInOrderWithDelay(self) -> None:
        """
        Target bytes reach the client in order, each one down delay after it
        was sent once the handshake is paid.
        """
        r = _Relay(WanProfile(rtt=0.1, upDelay=0.04))
        r.reactor.advance(1.0)
        r.fromTarget(b"one ")
        r.reactor.advance(0.01)
        r.fromTarget(b"two ")
        r.reactor.advance(0.049)
        self.assertEqual(r.client.value(), b"")
        r.reactor.advance(0.001)
        self.assertEqual(r.client.value(), b"one ")
        r.reactor.advance(0.01)
        self.assertEqual(r.client.value(), b"one two ")

    def test_rateLimitedStreamKeepsOrder(self) -> None:
        """
        A large rate-limited transfer arrives whole and in order, no sooner
        than its serialization time.
        """
        r = _Relay(WanProfile(rtt=0.02, rateBps=8e6, slowStart=False))
        data = bytes(range(256)) * 400
        for i in range(0, len(data), 10_000):
            r.relay.dataReceived(data[i : i + 10_000])
        r.reactor.advance(0.02 + 0.01 + len(data) / 1e6 - 0.002)
        self.assertLess(len(r.target.value()), len(data))
        self.assertTrue(data.startswith(r.target.value()))
        r.reactor.advance(0.002)
        self.assertEqual(r.target.value(), data)

    def test_sharedBottleneckAcrossConnections(self) -> None:
        """
        With C{sharedBottleneck}, two connections through one relay share
        the rate: the second one's bytes wait behind the first one's.
        Without it, each gets the full rate.
        """
        for shared, expectedSeconds in ((True, 0.02), (False, 0.01)):
            profile = WanProfile(
                rtt=0.02,
                rateBps=8e6,
                slowStart=False,
                handshake=False,
                sharedBottleneck=shared,
            )
            r = _Relay(profile)
            other = r.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5001))
            otherClient = _Transport()
            other.makeConnection(otherClient)
            otherTarget = _Transport()
            r.reactor.tcpClients[1][2].buildProtocol(None).makeConnection(otherTarget)
            r.relay.dataReceived(b"a" * 10_000)
            other.dataReceived(b"b" * 10_000)
            r.reactor.advance(0.01 + expectedSeconds - 0.0015)
            self.assertLess(len(otherTarget.value()), 10_000, shared)
            r.reactor.advance(0.0015)
            self.assertEqual(otherTarget.value(), b"b" * 10_000, shared)
            self.assertEqual(r.target.value(), b"a" * 10_000, shared)

    def test_slowStartThroughRelay(self) -> None:
        """
        A large response crosses in rounds: ten segments, then the rest one
        RTT later.
        """
        r = _Relay(WanProfile(rtt=0.1))
        r.reactor.advance(1.0)
        r.fromTarget(b"r" * 30_000)
        r.reactor.advance(0.05)
        self.assertEqual(len(r.client.value()), IW)
        r.reactor.advance(0.099)
        self.assertEqual(len(r.client.value()), IW)
        r.reactor.advance(0.001)
        self.assertEqual(len(r.client.value()), 30_000)

    def test_heldUntilTargetConnects(self) -> None:
        """
        Data due before the target connection is up is written as soon as it
        is.
        """
        r = _Relay(WanProfile(rtt=0.1), connectTarget=False)
        r.relay.dataReceived(b"early")
        r.reactor.advance(1.0)
        r.connectTarget()
        self.assertEqual(r.target.value(), b"early")

    def test_backPressurePausesSource(self) -> None:
        """
        More than the high-water mark queued pauses the sending transport;
        it resumes once the queue has drained to half of that.
        """
        profile = WanProfile(rtt=0.02, rateBps=8e6, slowStart=False, highWater=8000)
        r = _Relay(profile)
        r.relay.dataReceived(b"x" * 6000)
        self.assertEqual(r.client.producerState, "producing")
        r.relay.dataReceived(b"x" * 6000)
        self.assertEqual(r.client.producerState, "paused")
        r.reactor.advance(0.02 + 0.01 + 0.007)
        self.assertEqual(r.client.producerState, "paused")
        r.reactor.advance(0.002)
        self.assertEqual(r.client.producerState, "producing")
        r.reactor.advance(1.0)
        self.assertEqual(len(r.target.value()), 12_000)

    def test_pausedSinkHoldsData(self) -> None:
        """
        A sink whose buffer is full pauses delivery; the queue then pauses
        the source, and resuming delivers everything that is due at once.
        """
        profile = WanProfile(rtt=0.02, highWater=4000)
        r = _Relay(profile)
        r.reactor.advance(1.0)
        producer = r.target.producer
        assert producer is not None
        producer.pauseProducing()
        r.relay.dataReceived(b"a" * 3000)
        r.reactor.advance(1.0)
        self.assertEqual(r.target.value(), b"")
        r.relay.dataReceived(b"b" * 3000)
        self.assertEqual(r.client.producerState, "paused")
        r.reactor.advance(1.0)
        producer.resumeProducing()
        self.assertEqual(r.target.value(), b"a" * 3000 + b"b" * 3000)
        self.assertEqual(r.client.producerState, "producing")

    def test_halfClosePropagates(self) -> None:
        """
        A client half-close reaches the target after the client's data and
        its delay; the target answers and closes, and then both connections
        are closed.
        """
        r = _Relay(WanProfile(rtt=0.1))
        r.relay.dataReceived(b"request")
        r.relay.readConnectionLost()
        r.reactor.advance(0.149)
        self.assertFalse(r.target.writeClosed)
        r.reactor.advance(0.001)
        self.assertEqual(r.target.value(), b"request")
        self.assertTrue(r.target.writeClosed)
        self.assertIsNone(r.target.producer)
        self.assertFalse(r.target.disconnecting)
        assert r.targetProtocol is not None
        r.fromTarget(b"response")
        IHalfCloseableProtocol(r.targetProtocol).readConnectionLost()
        r.reactor.advance(0.049)
        self.assertFalse(r.client.writeClosed)
        r.reactor.advance(0.001)
        self.assertEqual(r.client.value(), b"response")
        self.assertTrue(r.client.writeClosed)
        self.assertTrue(r.client.disconnecting)
        self.assertTrue(r.target.disconnecting)

    def test_targetCloseClosesClientAfterData(self) -> None:
        """
        When the target closes, what it sent is delivered, then the client
        connection is closed; bytes still going up are dropped.
        """
        r = _Relay(WanProfile(rtt=0.1))
        r.reactor.advance(1.0)
        r.fromTarget(b"bye")
        r.relay.dataReceived(b"lost")
        assert r.targetProtocol is not None
        r.targetProtocol.connectionLost(Failure(ConnectionRefusedError()))
        r.reactor.advance(0.049)
        self.assertFalse(r.client.disconnecting)
        r.reactor.advance(0.001)
        self.assertEqual(r.client.value(), b"bye")
        self.assertTrue(r.client.disconnecting)
        self.assertFalse(r.client.writeClosed)
        r.reactor.advance(1.0)
        self.assertEqual(r.target.value(), b"")
        r.relay.connectionLost(Failure(ConnectionRefusedError()))
        self.successResultOf(r.relay.whenClosed())
        self.assertEqual(r.factory.openConnections, 0)

    def test_clientGoneClosesTargetAfterData(self) -> None:
        """
        When the client vanishes, its data still reaches the target, which
        is then closed; data coming down is dropped.
        """
        r = _Relay(WanProfile(rtt=0.1))
        r.reactor.advance(1.0)
        r.relay.dataReceived(b"last words")
        r.fromTarget(b"unheard")
        r.relay.connectionLost(Failure(ConnectionRefusedError()))
        r.reactor.advance(0.05)
        self.assertEqual(r.target.value(), b"last words")
        self.assertTrue(r.target.disconnecting)
        r.reactor.advance(1.0)
        self.assertEqual(r.client.value(), b"")
        closed = r.relay.whenClosed()
        self.assertNoResult(closed)
        assert r.targetProtocol is not None
        r.targetProtocol.connectionLost(Failure(ConnectionRefusedError()))
        self.successResultOf(closed)

    def test_connectFailureClosesClient(self) -> None:
        """
        A target that cannot be reached closes the client connection, with
        the delay a server-side close would have.
        """
        r = _Relay(WanProfile(rtt=0.1), connectTarget=False)
        r.relay.dataReceived(b"hello?")
        targetFactory = r.reactor.tcpClients[0][2]
        targetFactory.clientConnectionFailed(
            r.reactor.connectors[0], Failure(ConnectionRefusedError())
        )
        r.reactor.advance(0.199)
        self.assertFalse(r.client.disconnecting)
        r.reactor.advance(0.001)
        self.assertTrue(r.client.disconnecting)
        self.assertEqual(r.client.value(), b"")
        r.relay.connectionLost(Failure(ConnectionRefusedError()))
        self.successResultOf(r.relay.whenClosed())

    def test_counters(self) -> None:
        """
        Bytes are counted per direction once delivered, per connection and
        summed on the factory.
        """
        r = _Relay(WanProfile(rtt=0.1))
        factory = r.factory
        r.relay.dataReceived(b"x" * 100)
        r.fromTarget(b"y" * 1000)
        self.assertEqual(factory.counters.total, 0)
        r.reactor.advance(1.0)
        self.assertEqual((r.relay.counters.up, r.relay.counters.down), (100, 1000))

        other = factory.buildProtocol(None)
        other.makeConnection(_Transport())
        targetFactory = r.reactor.tcpClients[1][2]
        targetProtocol = targetFactory.buildProtocol(None)
        assert targetProtocol is not None
        targetProtocol.makeConnection(_Transport())
        other.dataReceived(b"z" * 7)
        r.reactor.advance(1.0)
        self.assertEqual((other.counters.up, other.counters.down), (7, 0))
        self.assertEqual((factory.counters.up, factory.counters.down), (107, 1000))
        self.assertEqual(factory.counters.total, 1107)
        self.assertEqual(factory.connections, 2)

    def test_closeAll(self) -> None:
        """
        closeAll aborts both sides of every connection and fires once they
        are closed.
        """
        r = _Relay(WanProfile(rtt=0.1))
        r.relay.dataReceived(b"pending")
        d = r.factory.closeAll()
        self.assertTrue(r.client.disconnected)
        self.assertTrue(r.target.disconnected)
        self.assertNoResult(d)
        r.relay.connectionLost(Failure(ConnectionRefusedError()))
        assert r.targetProtocol is not None
        r.targetProtocol.connectionLost(Failure(ConnectionRefusedError()))
        self.successResultOf(d)
        r.reactor.advance(1.0)
        self.assertEqual(r.target.value(), b"")
        self.assertEqual(r.reactor.getDelayedCalls(), [])

    def test_badTargetPort(self) -> None:
        """
        A target port out of range is rejected at once.
        """
        self.assertRaises(
            ValueError,
            WanRelayFactory,
            MemoryReactorClock(),
            "127.0.0.1",
            0,
            WanProfile(rtt=0.1),
        )

    def test_listenWan(self) -> None:
        """
        listenWan with a port number listens on loopback with a relay
        factory for the target.
        """
        reactor = MemoryReactorClock()
        d = listenWan(reactor, 9000, "::1", 8443, WanProfile(rtt=0.1))
        self.successResultOf(d)
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (9000, "127.0.0.1"))
        self.assertIsInstance(factory, WanRelayFactory)
        factory = cast(WanRelayFactory, factory)
        self.assertEqual((factory.targetHost, factory.targetPort), ("::1", 8443))
        relay = factory.buildProtocol(None)
        self.assertIsInstance(relay, WanRelayProtocol)


class CommandLineTests(SynchronousTestCase):
    """
    Tests for the command-line parsing.
    """

    def test_parseDuration(self) -> None:
        """
        Durations take us, ms or s, or are seconds.
        """
        self.assertAlmostEqual(parseDuration("100ms"), 0.1)
        self.assertAlmostEqual(parseDuration("0.25s"), 0.25)
        self.assertAlmostEqual(parseDuration("250us"), 0.00025)
        self.assertAlmostEqual(parseDuration("2"), 2.0)
        self.assertRaises(ValueError, parseDuration, "fast")
        self.assertRaises(ValueError, parseDuration, "-1s")

    def test_parseRate(self) -> None:
        """
        Rates follow tc: bit units are bits per second, bps are bytes.
        """
        self.assertEqual(parseRate("20mbit"), 20e6)
        self.assertEqual(parseRate("1Gbit"), 1e9)
        self.assertEqual(parseRate("500kbit"), 500e3)
        self.assertEqual(parseRate("2mbps"), 16e6)
        self.assertEqual(parseRate("1000"), 1000.0)
        self.assertRaises(ValueError, parseRate, "0mbit")
        self.assertRaises(ValueError, parseRate, "20 furlongs")

    def test_parseTarget(self) -> None:
        """
        Targets are host:port, with IPv6 addresses in brackets.
        """
        self.assertEqual(_parseTarget("127.0.0.1:8443"), ("127.0.0.1", 8443))
        self.assertEqual(_parseTarget("[::1]:8443"), ("::1", 8443))
        self.assertRaises(ValueError, _parseTarget, "127.0.0.1")
        self.assertRaises(ValueError, _parseTarget, "host:99999")

    def test_arguments(self) -> None:
        """
        The documented command line builds the matching profile.
        """
        args = _argumentParser().parse_args(
            ["--listen", "9000", "--to", "127.0.0.1:8443", "--rtt", "100ms"]
            + ["--rate", "20mbit", "--no-slow-start"]
        )
        self.assertEqual(args.listen, "9000")
        self.assertEqual(args.to, ("127.0.0.1", 8443))
        self.assertEqual(
            _profileFromArguments(args),
            WanProfile(rtt=0.1, rateBps=20e6, slowStart=False),
        )
        shared = _argumentParser().parse_args(
            ["--listen", "9000", "--to", "127.0.0.1:8443", "--rtt", "100ms"]
            + ["--rate", "20mbit", "--shared-bottleneck"]
        )
        self.assertEqual(
            _profileFromArguments(shared),
            WanProfile(rtt=0.1, rateBps=20e6, sharedBottleneck=True),
        )


class _Answer(Protocol):
    """
    Answers each line with C{pong}, and reports when its connection ends.
    """

    def __init__(self, lost: list[Deferred[None]]) -> None:
        self._lost = lost

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        for _ in range(data.count(b"\n")):
            self.transport.write(b"pong\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for d in self._lost:
            d.callback(None)


class _Ask(Protocol):
    """
    Sends one line per call of L{ask} and fires when its answer is in.
    """

    def __init__(self) -> None:
        self._waiting: Deferred[None] | None = None
        self.closed: Deferred[None] = Deferred()

    def ask(self) -> Deferred[None]:
        assert self.transport is not None
        self._waiting = Deferred()
        self.transport.write(b"ping\n")
        return self._waiting

    def dataReceived(self, data: bytes) -> None:
        if self._waiting is not None and data.endswith(b"\n"):
            waiting, self._waiting = self._waiting, None
            waiting.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class LoopbackTests(TestCase):
    """
    A real relay on loopback, timed with the real clock.
    """

    timeout = 10

    @inlineCallbacks
    def test_newConnectionCostsTwoRtts(self):  # type: ignore[no-untyped-def]
        """
        Over a new connection a request/response takes at least two RTTs,
        and a second one on the same connection at least one.
        """
        from twisted.internet import reactor

        rtt = 0.04
        serverLost: list[Deferred[None]] = [Deferred()]
        server = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: _Answer(serverLost))
        )
        self.addCleanup(server.stopListening)
        factory = WanRelayFactory(
            reactor, "127.0.0.1", server.getHost().port, WanProfile(rtt=rtt)
        )
        relayPort = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            factory
        )
        self.addCleanup(relayPort.stopListening)

        started = reactor.seconds()
        client = yield TCP4ClientEndpoint(
            reactor, "127.0.0.1", relayPort.getHost().port
        ).connect(Factory.forProtocol(_Ask))
        yield client.ask()
        first = reactor.seconds() - started

        started = reactor.seconds()
        yield client.ask()
        second = reactor.seconds() - started

        client.transport.loseConnection()
        yield client.closed
        yield factory.closeAll()
        yield serverLost[0]

        self.assertGreaterEqual(first, 2 * rtt - 1e-6)
        self.assertGreaterEqual(second, rtt - 1e-6)
        self.assertEqual(factory.counters.up, 10)
        self.assertEqual(factory.counters.down, 10)

"""
Load test of the link in memory: 1,000 concurrent streams on one link.
"""

from __future__ import annotations

import hashlib

from twisted.internet.error import ConnectionDone
from twisted.trial.unittest import SynchronousTestCase

from railgun.link import LinkStream

from .test_link_protocol import Echo, Pair, Recorder

STREAMS = 1000
SIZE = 64 * 1024


def payload(index: int) -> bytes:
    """
    A distinct 64 KiB payload for stream C{index}.
    """
    seed = hashlib.sha256(b"%d" % index).digest()
    return (seed * (SIZE // len(seed) + 1))[:SIZE]


class ThousandStreamsTests(SynchronousTestCase):
    """
    Many streams at once on one link keep their data intact and in order.
    """

    def test_thousandStreamsBothWays(self) -> None:
        """
        1,000 concurrent streams each send a distinct 64 KiB body and get it
        echoed back intact, in order, with every stream ending cleanly.
        """
        pair = Pair(serverStreams=Echo)
        streams: list[tuple[int, Recorder, LinkStream]] = []
        for i in range(STREAMS):
            protocol = Recorder()
            stream = pair.client.openStream(protocol, [(b":path", b"/%d" % i)])
            body = payload(i)
            # Written in uneven pieces so that frames split and join chunks.
            stream.write(body[:1000])
            stream.write(body[1000:40000])
            stream.write(body[40000:])
            stream.loseConnection()
            streams.append((i, protocol, stream))
        self.assertEqual(pair.client.openStreamCount, STREAMS)
        for _ in range(20):
            pair.flush()
            if all(protocol.done for _, protocol, _ in streams):
                break
        for i, protocol, stream in streams:
            self.assertEqual(protocol.body, payload(i), f"stream {i}")
            protocol.reason.trap(ConnectionDone)
            self.assertEqual(stream.counters.received, SIZE)
        for server in pair.serverProtocols:
            server.reason.trap(ConnectionDone)
        self.assertEqual(len(pair.serverProtocols), STREAMS)
        self.assertEqual(pair.client.openStreamCount, 0)
        self.assertEqual(pair.server.openStreamCount, 0)
        self.assertGreater(pair.client.counters.sent, STREAMS * SIZE)
        self.assertEqual(pair.client.counters.sent, pair.server.counters.received)

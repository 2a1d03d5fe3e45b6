"""
The multiplexed link between edge and origin role: frames, streams, flow
control, liveness and drain.  See C{docs/protocol.md}.
"""

from .counting import ByteCounters, CountingTransport
from .errors import (
    ErrorCode,
    LinkError,
    LinkLost,
    LinkUnavailable,
    ProtocolError,
    StreamRefused,
    StreamReset,
)
from .factory import LinkClientFactory, LinkServerFactory
from .frames import Settings
from .protocol import LinkProtocol, LinkStats, LinkStream, StreamProtocol, StreamState
from .requestid import RequestIdGenerator

__all__ = [
    "ByteCounters",
    "CountingTransport",
    "ErrorCode",
    "LinkClientFactory",
    "LinkError",
    "LinkLost",
    "LinkProtocol",
    "LinkServerFactory",
    "LinkStats",
    "LinkStream",
    "LinkUnavailable",
    "ProtocolError",
    "RequestIdGenerator",
    "Settings",
    "StreamProtocol",
    "StreamRefused",
    "StreamReset",
    "StreamState",
]

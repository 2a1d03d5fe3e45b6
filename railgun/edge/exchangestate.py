"""
The lifecycle of one exchange at the edge, without I/O: used by
L{railgun.edge.proxy._Exchange} and L{railgun.edge.proxy.EdgeStreamHandler}.

Two small machines, each a table of (state, input) -> state; a pair
missing from a table is an input that cannot happen in that state, refused
with L{LifecycleError} (L{railgun._lifecycle}):

  - L{Exchange}: the client's request, open until it is answered, failed,
    aborted, or the client goes (what C{done} said);
  - L{Relay}: one stream's response on its way to the client (a stream
    handler's; a retried or refetched exchange has one per stream).

They are C{IntEnum} tables, like the link's (L{railgun.link.linkstate}),
rather than C{automat} machines: one lookup per body chunk.
"""

from __future__ import annotations

from enum import IntEnum, auto

from railgun._lifecycle import LifecycleError, transition


class Exchange(IntEnum):
    """
    The client's request.
    """

    OPEN = auto()  # looking for a base, a link, or waiting for the response
    ANSWERED = auto()  # the response was relayed whole
    FAILED = auto()  # the edge answered an error of its own (5xx)
    ABORTED = auto()  # the stream failed mid-response: the connection aborted
    GONE = auto()  # the client went away first


class ExchangeInput(IntEnum):
    FINISH = auto()  # the response is complete
    FAIL = auto()  # an error response of the edge's goes instead
    ABORT = auto()  # the response broke off after its head
    CLIENT_GONE = auto()  # the client's connection went


_E = Exchange
_EI = ExchangeInput
EXCHANGE_TRANSITIONS: dict[tuple[Exchange, ExchangeInput], Exchange] = {
    (_E.OPEN, _EI.FINISH): _E.ANSWERED,
    (_E.OPEN, _EI.FAIL): _E.FAILED,
    (_E.OPEN, _EI.ABORT): _E.ABORTED,
    (_E.OPEN, _EI.CLIENT_GONE): _E.GONE,
}
# The client may go at any time; an exchange already over stays as it
# ended.
for _end in (_E.ANSWERED, _E.FAILED, _E.ABORTED, _E.GONE):
    EXCHANGE_TRANSITIONS[(_end, _EI.CLIENT_GONE)] = _end


class Relay(IntEnum):
    """
    One stream's response, as the edge relays it.
    """

    HEAD = auto()  # waiting for the response head
    REFUSED = auto()  # the head came too late, or malformed: the stream reset
    HOLDING = auto()  # a version's head came: its payload is held
    RELAYING = auto()  # the head went to the client; the body follows
    ENCODING = auto()  # a rebuilt body is being compressed for the client
    FINISHED = auto()  # the response is written, or handed on (a refetch)


class RelayInput(IntEnum):
    REFUSE = auto()  # the head is not relayed
    HOLD = auto()  # a version's head arrived
    SEND_HEAD = auto()  # the head is set on the client's response
    ENCODE = auto()  # compressing (or preparing a dictionary) starts
    ENCODED = auto()  # it ended (done, failed or abandoned)
    FINISH = auto()  # the response is complete, or the exchange refetches


_R = Relay
_RI = RelayInput
RELAY_TRANSITIONS: dict[tuple[Relay, RelayInput], Relay] = {
    (_R.HEAD, _RI.REFUSE): _R.REFUSED,
    (_R.HEAD, _RI.HOLD): _R.HOLDING,
    (_R.HEAD, _RI.SEND_HEAD): _R.RELAYING,
    (_R.HOLDING, _RI.SEND_HEAD): _R.RELAYING,
    # A version that cannot be rebuilt: the exchange asks again.
    (_R.HOLDING, _RI.FINISH): _R.FINISHED,
    (_R.RELAYING, _RI.ENCODE): _R.ENCODING,
    (_R.ENCODING, _RI.ENCODED): _R.RELAYING,
    (_R.RELAYING, _RI.FINISH): _R.FINISHED,
}


__all__ = [
    "EXCHANGE_TRANSITIONS",
    "RELAY_TRANSITIONS",
    "Exchange",
    "ExchangeInput",
    "LifecycleError",
    "Relay",
    "RelayInput",
    "transition",
]

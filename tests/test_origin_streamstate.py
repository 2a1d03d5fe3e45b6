"""
Tests for L{railgun.origin.streamstate}: the origin stream's lifecycle
tables, without a reactor.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from railgun.origin.streamstate import (
    LINK_TRANSITIONS,
    RESPONSE_TRANSITIONS,
    TIMER_TRANSITIONS,
    LifecycleError,
    Link,
    LinkInput,
    Response,
    ResponseInput,
    Timer,
    TimerInput,
)
from tests.lifecycletables import checkTable, reachable

_R = Response
_RI = ResponseInput
_T = Timer
_TI = TimerInput

#: every allowed transition, written out again: the tables must say this.
EXPECTED_RESPONSE = {
    (_R.FETCHING, _RI.RECEIVE): _R.RECEIVED,
    (_R.RECEIVED, _RI.COLLECT): _R.COLLECTING,
    (_R.RECEIVED, _RI.RELAY): _R.RELAYING,
    (_R.COLLECTING, _RI.RELAY): _R.RELAYING,
    (_R.COLLECTING, _RI.ENCODE): _R.ENCODING,
    (_R.COLLECTING, _RI.FAIL): _R.FAILED,
    (_R.RELAYING, _RI.DISCARD): _R.DISCARDING,
    (_R.ENCODING, _RI.DISCARD): _R.DISCARDING,
}
EXPECTED_TIMER = {
    (_T.IDLE, _TI.START): _T.RUNNING,
    (_T.IDLE, _TI.CANCEL): _T.IDLE,
    (_T.IDLE, _TI.PAUSE): _T.SUSPENDED,
    (_T.RUNNING, _TI.CANCEL): _T.IDLE,
    (_T.RUNNING, _TI.PAUSE): _T.SUSPENDED,
    (_T.RUNNING, _TI.EXPIRE): _T.EXPIRED,
    (_T.SUSPENDED, _TI.CANCEL): _T.SUSPENDED,
    (_T.SUSPENDED, _TI.PAUSE): _T.SUSPENDED,
    (_T.SUSPENDED, _TI.RESUME): _T.RUNNING,
    (_T.EXPIRED, _TI.CANCEL): _T.EXPIRED,
    (_T.EXPIRED, _TI.PAUSE): _T.EXPIRED,
}
EXPECTED_LINK = {(Link.OPEN, LinkInput.LOST): Link.GONE}


class TablesTests(SynchronousTestCase):
    """
    Each machine allows exactly its transitions and refuses every other
    input loudly.
    """

    def test_response(self) -> None:
        """
        The response machine allows exactly its eight transitions.
        """
        checkTable(
            self, RESPONSE_TRANSITIONS, EXPECTED_RESPONSE, Response, ResponseInput
        )

    def test_timer(self) -> None:
        """
        The timer machine allows exactly its eleven transitions.
        """
        checkTable(self, TIMER_TRANSITIONS, EXPECTED_TIMER, Timer, TimerInput)

    def test_link(self) -> None:
        """
        The stream is lost once; losing it again is refused.
        """
        checkTable(self, LINK_TRANSITIONS, EXPECTED_LINK, Link, LinkInput)

    def test_errorIsAssertion(self) -> None:
        """
        A refused input is an C{AssertionError}: a bug, never a condition
        a caller handles.
        """
        self.assertTrue(issubclass(LifecycleError, AssertionError))

    def test_endsAreFinal(self) -> None:
        """
        No input leaves a finished response (discarded or failed), and an
        expired timer is never rearmed.
        """
        for state in (Response.DISCARDING, Response.FAILED):
            self.assertEqual([k for k in RESPONSE_TRANSITIONS if k[0] is state], [])
        self.assertEqual(
            {v for (s, _), v in TIMER_TRANSITIONS.items() if s is Timer.EXPIRED},
            {Timer.EXPIRED},
        )

    def test_everyStateReachable(self) -> None:
        """
        Every state of each machine is reachable from its initial state.
        """
        for table, initial, states in (
            (RESPONSE_TRANSITIONS, Response.FETCHING, Response),
            (TIMER_TRANSITIONS, Timer.IDLE, Timer),
            (LINK_TRANSITIONS, Link.OPEN, Link),
        ):
            self.assertEqual(reachable(table, initial), set(states))

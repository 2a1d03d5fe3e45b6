"""
Tests for L{railgun.edge.exchangestate}: the edge exchange's lifecycle
tables, without a reactor.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from railgun.edge.exchangestate import (
    EXCHANGE_TRANSITIONS,
    RELAY_TRANSITIONS,
    Exchange,
    ExchangeInput,
    Relay,
    RelayInput,
)
from tests.lifecycletables import checkTable, reachable

_E = Exchange
_EI = ExchangeInput
_R = Relay
_RI = RelayInput

#: every allowed transition, written out again: the tables must say this.
EXPECTED_EXCHANGE = {
    (_E.OPEN, _EI.FINISH): _E.ANSWERED,
    (_E.OPEN, _EI.FAIL): _E.FAILED,
    (_E.OPEN, _EI.ABORT): _E.ABORTED,
    (_E.OPEN, _EI.CLIENT_GONE): _E.GONE,
    (_E.ANSWERED, _EI.CLIENT_GONE): _E.ANSWERED,
    (_E.FAILED, _EI.CLIENT_GONE): _E.FAILED,
    (_E.ABORTED, _EI.CLIENT_GONE): _E.ABORTED,
    (_E.GONE, _EI.CLIENT_GONE): _E.GONE,
}
EXPECTED_RELAY = {
    (_R.HEAD, _RI.REFUSE): _R.REFUSED,
    (_R.HEAD, _RI.HOLD): _R.HOLDING,
    (_R.HEAD, _RI.SEND_HEAD): _R.RELAYING,
    (_R.HOLDING, _RI.SEND_HEAD): _R.RELAYING,
    (_R.HOLDING, _RI.FINISH): _R.FINISHED,
    (_R.RELAYING, _RI.ENCODE): _R.ENCODING,
    (_R.ENCODING, _RI.ENCODED): _R.RELAYING,
    (_R.RELAYING, _RI.FINISH): _R.FINISHED,
}


class TablesTests(SynchronousTestCase):
    """
    Each machine allows exactly its transitions and refuses every other
    input loudly.
    """

    def test_exchange(self) -> None:
        """
        An open exchange ends one way, once; only the client's leaving is
        heard after its end, and changes nothing.
        """
        checkTable(
            self, EXCHANGE_TRANSITIONS, EXPECTED_EXCHANGE, Exchange, ExchangeInput
        )

    def test_relay(self) -> None:
        """
        The relay machine allows exactly its eight transitions.
        """
        checkTable(self, RELAY_TRANSITIONS, EXPECTED_RELAY, Relay, RelayInput)

    def test_endsAreFinal(self) -> None:
        """
        Nothing leaves a refused or finished relay.
        """
        for state in (Relay.REFUSED, Relay.FINISHED):
            self.assertEqual([k for k in RELAY_TRANSITIONS if k[0] is state], [])

    def test_everyStateReachable(self) -> None:
        """
        Every state of each machine is reachable from its initial state.
        """
        for table, initial, states in (
            (EXCHANGE_TRANSITIONS, Exchange.OPEN, Exchange),
            (RELAY_TRANSITIONS, Relay.HEAD, Relay),
        ):
            self.assertEqual(reachable(table, initial), set(states))

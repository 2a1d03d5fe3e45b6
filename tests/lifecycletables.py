"""
Checks shared by the tests of the roles' lifecycle tables
(L{railgun._lifecycle}): a table allows exactly the expected transitions,
and every state is reachable.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from railgun._lifecycle import LifecycleError, transition


def checkTable(
    case: SynchronousTestCase,
    table: dict[Any, Any],
    expected: dict[Any, Any],
    states: type[IntEnum],
    inputs: type[IntEnum],
) -> None:
    """
    Every (state, input) of C{expected} gives its state through
    L{transition}; every other pair raises L{LifecycleError} naming both.
    """
    case.assertEqual(table, expected)
    for state in states:
        for event in inputs:
            if (state, event) in expected:
                case.assertIs(transition(table, state, event), expected[(state, event)])
            else:
                error = case.assertRaises(
                    LifecycleError, transition, table, state, event
                )
                case.assertIn(event.name, str(error))
                case.assertIn(state.name, str(error))


def reachable(table: dict[Any, Any], initial: IntEnum) -> set[Any]:
    """
    @return: the states reachable from C{initial} in C{table}, itself included.
    """
    seen = {initial}
    frontier = [initial]
    while frontier:
        state = frontier.pop()
        for (source, _), target in table.items():
            if source is state and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen

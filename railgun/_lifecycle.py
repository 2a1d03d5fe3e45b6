"""
The one helper of the roles' lifecycle tables
(L{railgun.origin.streamstate}, L{railgun.edge.exchangestate}): a table of
(state, input) -> state, where a missing pair is an input that cannot
happen in that state, refused loudly.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar


class LifecycleError(AssertionError):
    """
    An input that cannot happen in the current state: a bug of the caller.
    """


_S = TypeVar("_S", bound=IntEnum)
_I = TypeVar("_I", bound=IntEnum)


def transition(table: dict[tuple[_S, _I], _S], state: _S, event: _I) -> _S:
    """
    The state after C{event} in C{state}, by C{table}.

    @raise LifecycleError: when C{event} cannot happen in C{state}.
    """
    try:
        return table[(state, event)]
    except KeyError:
        raise LifecycleError(
            f"{event.name} in {type(state).__name__}.{state.name}"
        ) from None

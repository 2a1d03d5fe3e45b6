"""
Twisted's memcache client, from the inside: what the store's client
(L{railgun.stores.memcached.protocol.MemcacheClient}) reads or calls of
L{twisted.protocols.memcache.MemCacheProtocol} and its
L{twisted.protocols.memcache.Command} beyond their public API.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.protocols.memcache import Command, MemCacheProtocol

#: The private attributes of L{MemCacheProtocol} used here.
PROTOCOL_NEEDS = ("_current", "_cancelCommands", "_disconnected")

#: The private attributes of L{Command} used here.
COMMAND_NEEDS = ("_deferred",)

#: Twisted's private names this module uses, by the class that defines them:
#: checked by tests/test_compat.py.
TWISTED_PRIVATE = {
    "twisted.protocols.memcache.MemCacheProtocol": PROTOCOL_NEEDS,
    "twisted.protocols.memcache.Command": COMMAND_NEEDS,
}


def pendingCommands(protocol: MemCacheProtocol) -> deque[Any]:
    """
    @return: the commands C{protocol} sent and awaits the answers of, oldest
        first (the deque itself: appending queues a command sent by hand).
        Its items are L{Command}s, typed L{Any}: a command's fields are its
        keyword arguments.
    """
    return protocol._current  # type: ignore[no-any-return]


def failPendingCommands(protocol: MemCacheProtocol, error: Exception) -> None:
    """
    Fail every command C{protocol} awaits an answer to with C{error}.
    """
    protocol._cancelCommands(error)


def isDisconnected(protocol: MemCacheProtocol) -> bool:
    """
    @return: whether C{protocol}'s connection was lost.
    """
    return bool(protocol._disconnected)


def commandResult(command: Command) -> Deferred[Any]:
    """
    @return: the L{Deferred} that fires with C{command}'s answer.
    """
    return command._deferred  # type: ignore[no-any-return]

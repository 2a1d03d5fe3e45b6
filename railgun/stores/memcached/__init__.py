"""
The memcached version store (L{MemcachedVersionStore}), in three layers:
L{railgun.stores.memcached.format} (keys, chunk heads, server descriptions:
pure), L{railgun.stores.memcached.protocol} (the client protocol) and
L{railgun.stores.memcached.store} (the pool of servers and the store).
See C{docs/stores.md}.
"""

from .format import (
    DEFAULT_CHUNK_SIZE,
    FLAG_CHUNK,
    FLAG_HEAD,
    FLAG_PLAIN,
    MAX_CHUNKS,
    MAX_KEY_LENGTH,
    ChunkHead,
    chunkKey,
    memcachedKey,
    parseServer,
    valueChecksum,
)
from .protocol import MemcacheClient, PoolServer, StoreProtocolError
from .store import MemcachedVersionStore, serverEndpoint

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FLAG_CHUNK",
    "FLAG_HEAD",
    "FLAG_PLAIN",
    "MAX_CHUNKS",
    "MAX_KEY_LENGTH",
    "ChunkHead",
    "MemcacheClient",
    "MemcachedVersionStore",
    "PoolServer",
    "StoreProtocolError",
    "chunkKey",
    "memcachedKey",
    "parseServer",
    "serverEndpoint",
    "valueChecksum",
]

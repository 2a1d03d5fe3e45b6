"""
Version stores: bounded caches of page versions, in memory or in memcached.

See C{docs/stores.md}.
"""

from .interfaces import IVersionStore, StoreStats
from .memcached import MemcachedVersionStore
from .memory import MemoryVersionStore

__all__ = [
    "IVersionStore",
    "MemcachedVersionStore",
    "MemoryVersionStore",
    "StoreStats",
]

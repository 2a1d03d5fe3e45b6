"""
The statistics document: what C{/stats} answers and what is POSTed to
C{stats.url}, as the original Railgun reported its statistics in JSON.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from railgun import __version__
from railgun.admin.views import RoleView


def statsDocument(views: list[RoleView], now: float, started: float) -> dict[str, Any]:
    """
    @param now: the time of the document (seconds since the epoch).
    @param started: when the admin service started.
    @return: every counter of every role, JSON-ready.
    """
    roles: dict[str, Any] = {}
    for view in views:
        document = view.stats.asDict()
        pools = view.pools()
        document["links"] = [
            {
                "address": pool.address,
                "size": pool.size,
                "up": pool.up,
                "connecting": pool.connecting,
                "reconnects": pool.reconnects,
                "failures": dict(pool.failures),
                "links": [
                    {
                        "index": link.index,
                        "rtt_seconds": link.rtt,
                        "open_streams": link.openStreams,
                    }
                    for link in pool.links
                ],
            }
            for pool in pools
        ]
        document["streams_open"] = sum(
            link.openStreams for pool in pools for link in pool.links
        )
        document["stores"] = {
            name: {
                "hits": store.hits,
                "misses": store.misses,
                "sets": store.sets,
                "errors": store.errors,
                "evictions": store.evictions,
                "bytes": store.bytes,
                "items": store.items,
                "rejected": store.rejected,
            }
            for name, store in sorted(view.stores().items())
        }
        if view.role == "origin":
            service = view.service
            document["prepared"] = {
                "bases": service.preparer.prepared,
                "dropped": service.preparer.dropped,
                "bytes": service.preparedBytes(),
                "abandoned": service.abandonedDeltas(),
            }
        ready, why = view.readiness()
        document["ready"] = ready
        document["ready_reason"] = why
        roles[view.role] = document
    return {
        "version": __version__,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "time": round(now, 3),
        "uptime_seconds": round(now - started, 3),
        "roles": roles,
    }

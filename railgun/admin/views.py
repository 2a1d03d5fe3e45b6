"""
What the admin endpoint reads of a running role: its counters, version
stores, links and readiness, through the services' public attributes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from attrs import define, field

from railgun.stats import OTHER_HOSTS, UNKNOWN_HOST, Stats


@define
class LinkInfo:
    """
    One link that is up.

    @ivar rtt: its smoothed round-trip time from PING/PONG, or L{None}
        before the first PONG.
    """

    index: int
    rtt: float | None
    openStreams: int


@define
class PoolInfo:
    """
    The links of an edge to one origin role address (or, at the origin
    role, the links accepted from edges, under the address C{"edges"}).

    @ivar size: how many links are kept (0 at the origin role: as many as
        edges dial).
    """

    address: str
    size: int
    links: list[LinkInfo]
    reconnects: int = 0
    failures: Counter[str] = field(factory=Counter)

    @property
    def up(self) -> int:
        return len(self.links)

    @property
    def connecting(self) -> int:
        """
        Links not up (each being dialed again by its L{ClientService}).
        """
        return max(0, self.size - len(self.links))


@define
class RoleView:
    """
    One role service as the admin endpoint sees it.

    @ivar role: C{edge} or C{origin}.
    @ivar service: the L{railgun.edge.service.EdgeService} or
        L{railgun.origin.service.OriginService}.
    """

    role: str
    service: Any

    @property
    def stats(self) -> Stats:
        return self.service.stats  # type: ignore[no-any-return]

    def hostLabel(self, host: str) -> str:
        """
        The C{host} label of a host's counters: the entry of the role's host
        map that serves it (C{www.example.com}, C{*.example.com} or C{*}),
        so that a wildcard does not make a label per name a client invents.
        """
        if host in (UNKNOWN_HOST, OTHER_HOSTS):
            return host
        config = self.service.config
        hosts = config.links if self.role == "edge" else config.origins
        return hosts.matchingKey(host) or UNKNOWN_HOST  # type: ignore[no-any-return]

    def stores(self) -> dict[str, Any]:
        """
        @return: store name -> its L{railgun.stores.interfaces.StoreStats}.
        """
        if self.role == "edge":
            cache = self.service.proxy.cache
            return {} if cache is None else {"edge-cache": cache.stats}
        store = self.service.store
        name = "memcached" if type(store).__name__.startswith("Memcached") else "memory"
        return {name: store.stats}

    def pools(self) -> list[PoolInfo]:
        """
        @return: the links of the role.
        """
        if self.role == "edge":
            return [
                PoolInfo(
                    f"{pool.address.host}:{pool.address.port}",
                    pool.size,
                    _links(pool.readyLinks()),
                    pool.reconnects,
                    Counter(pool.failures),
                )
                for pool in self.service.pools.values()
            ]
        links = [link for link in self.service.links() if link.isReady()]
        return [PoolInfo("edges", 0, _links(links))]

    def streamsOpen(self) -> int:
        """
        @return: streams open on the role's links.
        """
        return sum(link.openStreams for pool in self.pools() for link in pool.links)

    def readiness(self) -> tuple[bool, str]:
        """
        @return: whether the role can serve, and why in a few words.
        """
        if self.role == "origin":
            if self.service.isListening():
                return True, "origin role: accepting links"
            return False, "origin role: not listening for links"
        down = [p.address for p in self.pools() if not p.up]
        if down:
            return False, f"edge: no link up to {', '.join(sorted(down))}"
        return True, "edge: a link is up to every origin role"


def _links(links: list[Any]) -> list[LinkInfo]:
    return [
        LinkInfo(index, link.rtt, link.openStreamCount)
        for index, link in enumerate(links)
    ]


def viewsOf(service: Any) -> list[RoleView]:
    """
    The role views of a role service: an edge, an origin role, or both
    (C{--role both}: each once started).
    """
    from railgun.edge.service import EdgeService
    from railgun.origin.service import OriginService

    if isinstance(service, EdgeService):
        return [RoleView("edge", service)]
    if isinstance(service, OriginService):
        return [RoleView("origin", service)]
    views = []
    for role in ("edge", "origin"):
        inner = getattr(service, role, None)
        if inner is not None:
            views.append(RoleView(role, inner))
    return views

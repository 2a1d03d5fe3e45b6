"""
Counters for what Railgun does, per host and in total: the figures an
operator watches (requests, bytes from origins, bytes on the link and their
ratio, how bodies crossed, fallbacks and why, store hits).
"""

from __future__ import annotations

from collections import Counter

from attrs import define, field


@define
class Counters:
    """
    One set of counters (for a host, or for everything).
    """

    requests: int = 0
    responses: int = 0
    errors: int = 0
    bodyBytesServed: int = 0
    bodyBytesFromOrigin: int = 0
    bodyBytesOnLink: int = 0
    bodies: Counter[str] = field(factory=Counter)
    fallbacks: Counter[str] = field(factory=Counter)
    storeHits: int = 0
    storeMisses: int = 0
    siblingBases: int = 0

    def ratio(self) -> float:
        """
        @return: body bytes that crossed the link as a percentage of the body
            bytes served (100.0 when nothing was saved, 0.0 before any).
        """
        if not self.bodyBytesServed:
            return 0.0
        return 100.0 * self.bodyBytesOnLink / self.bodyBytesServed

    def asDict(self) -> dict[str, object]:
        """
        @return: the counters as plain JSON-ready values.
        """
        return {
            "requests": self.requests,
            "responses": self.responses,
            "errors": self.errors,
            "body_bytes_served": self.bodyBytesServed,
            "body_bytes_from_origin": self.bodyBytesFromOrigin,
            "body_bytes_on_link": self.bodyBytesOnLink,
            "ratio_percent": round(self.ratio(), 3),
            "bodies": dict(self.bodies),
            "fallbacks": dict(self.fallbacks),
            "store_hits": self.storeHits,
            "store_misses": self.storeMisses,
            "sibling_bases": self.siblingBases,
        }


#: the name under which hosts beyond L{Stats.maxHosts} are counted.
OTHER_HOSTS = "(other hosts)"


@define
class Stats:
    """
    Counters in total and per host.

    Hosts come from clients (a wildcard or catch-all mapping serves any
    name), so at most C{maxHosts} get counters of their own; the rest share
    L{OTHER_HOSTS}.
    """

    total: Counters = field(factory=Counters)
    maxHosts: int = 1000
    _hosts: dict[str, Counters] = field(factory=dict)

    def forHost(self, host: str) -> Counters:
        """
        @return: the counters of C{host}, created on first use.
        """
        counters = self._hosts.get(host)
        if counters is None:
            if len(self._hosts) >= self.maxHosts:
                host = OTHER_HOSTS
                counters = self._hosts.get(host)
            if counters is None:
                counters = self._hosts[host] = Counters()
        return counters

    def hosts(self) -> dict[str, Counters]:
        """
        @return: a copy of the per-host counters.
        """
        return dict(self._hosts)

    def record(self, host: str | None, **increments: int) -> None:
        """
        Add to integer counters of the total and of C{host}.
        """
        targets = [self.total] if host is None else [self.total, self.forHost(host)]
        for counters in targets:
            for name, value in increments.items():
                setattr(counters, name, getattr(counters, name) + value)

    def count(self, host: str | None, kind: str, key: str) -> None:
        """
        Count one event of a keyed kind (C{"bodies"} or C{"fallbacks"}).
        """
        targets = [self.total] if host is None else [self.total, self.forHost(host)]
        for counters in targets:
            getattr(counters, kind)[key] += 1

    def asDict(self) -> dict[str, object]:
        """
        @return: everything, JSON-ready.
        """
        return {
            "total": self.total.asDict(),
            "hosts": {h: c.asDict() for h, c in sorted(self._hosts.items())},
        }

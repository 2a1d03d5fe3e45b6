"""
A base for a URL seen for the first time: a recent version of another URL
of the same host.

Measured on the corpus (C{docs/benchmarks.md}, "Codec"): the same page under
another URL (query strings, tracking parameters: modelled as an older version
of the page) costs 0.8% of identity as a delta against 12.3% compressed
whole; a different page of the same site sharing a template roughly halves
the bytes (cdr: 19.7% against 40.1%); an unrelated page of the same host
costs about what no base costs. So the edge, holding no version of a URL,
names as base the version of the remembered URL of that host that shares the
longest prefix with it. Pure bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict

from attrs import define, field


def commonPrefixLength(a: bytes, b: bytes) -> int:
    """
    @return: the number of leading bytes C{a} and C{b} share.
    """
    n = min(len(a), len(b))
    i = 0
    # Compare in halves first: long shared prefixes are the common case.
    step = n
    while step:
        if a[i : i + step] == b[i : i + step]:
            i += step
            step = min(step, n - i)
        else:
            step //= 2
    return i


@define
class SiblingIndex:
    """
    Recently stored URL keys, per host, to pick a sibling as base.

    The edge calls L{remember} whenever it stores a version of a URL and
    L{forget} when it drops one; L{pick} proposes, for a URL with no
    version, the remembered key of the same host with the longest common
    prefix (most recent first on ties). Memory is bounded: at most
    C{maxHosts} hosts and C{perHost} keys per host, least recently used
    dropped first.

    @ivar _perHost: keys remembered per host.
    @ivar _maxHosts: hosts remembered.
    @ivar _minPrefix: shortest common prefix (bytes) worth proposing; 1
        accepts any key of the host (they all start with C{/}).
    """

    _perHost: int = 64
    _maxHosts: int = 4096
    _minPrefix: int = 1
    _hosts: OrderedDict[bytes, OrderedDict[bytes, None]] = field(
        factory=OrderedDict, init=False
    )

    def __attrs_post_init__(self) -> None:
        if self._perHost < 1 or self._maxHosts < 1:
            raise ValueError("SiblingIndex needs room for one host and one key")

    def remember(self, host: bytes, key: bytes) -> None:
        """
        Note that a version of C{key} (path and query) on C{host} is stored.
        """
        keys = self._hosts.get(host)
        if keys is None:
            keys = self._hosts[host] = OrderedDict()
            while len(self._hosts) > self._maxHosts:
                self._hosts.popitem(last=False)
        else:
            self._hosts.move_to_end(host)
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self._perHost:
            keys.popitem(last=False)

    def forget(self, host: bytes, key: bytes) -> None:
        """
        Note that the version of C{key} on C{host} is no longer stored.
        """
        keys = self._hosts.get(host)
        if keys is None:
            return
        keys.pop(key, None)
        if not keys:
            del self._hosts[host]

    def pick(self, host: bytes, key: bytes) -> bytes | None:
        """
        Propose a sibling of C{key} on C{host} to use as base.

        @param host: the request's host.
        @param key: the URL key (path and query) with no stored version.
        @return: a remembered key other than C{key}, or C{None} when the
            host has none sharing at least C{minPrefix} bytes.
        """
        keys = self._hosts.get(host)
        if not keys:
            return None
        best: bytes | None = None
        bestLength = self._minPrefix - 1
        # Newest first, so that on a tie the most recent version wins.
        for candidate in reversed(keys):
            if candidate == key:
                continue
            length = commonPrefixLength(candidate, key)
            if length > bestLength:
                best, bestLength = candidate, length
        return best

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._hosts.values())

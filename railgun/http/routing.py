"""
Host maps: which link (at the edge) or which origin server (at the origin
role) serves a request, by its normalized host name.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from attrs import field, frozen

V = TypeVar("V")
W = TypeVar("W")

DEFAULT_LINK_PORT = 2408
"""
The origin role's default link port, as the original's listener.
"""

_LABEL = re.compile(r"[a-z0-9_\-]{1,63}\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_BASE_PATH = re.compile(r"[\x21\x22\x24-\x3e\x40-\x7e]*\Z")
_TARGET = re.compile(rb"/[\x21\x22\x24-\x7e\x80-\xff]*\Z")
# A 253-octet name, its trailing dot and ":65535" fit, with room to spare.
_MAX_AUTHORITY = 300
_DEFAULT_PORTS = {"http": 80, "https": 443}


class BadHost(ValueError):
    """
    An authority or host name that cannot be routed.
    """


def _hostName(text: str) -> str:
    """
    Normalize a host name or IPv4 address (no port, no brackets).

    @return: the lowercase name without a trailing dot.
    @raise BadHost: unless it is dot-separated labels of letters, digits,
        C{-} and C{_}, each 1 to 63 long, at most 253 in all.
    """
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        raise BadHost(f"invalid host name {text!r}")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise BadHost(f"invalid host name {text!r}")
    return name


def _ipv6(text: str) -> str:
    """
    @return: the canonical compressed form of an IPv6 literal.
    @raise BadHost: if C{text} is not one.  A zone id (C{fe80::1%eth0}) is
        refused: it means nothing to another host.
    """
    try:
        if "%" in text:
            raise ValueError(text)
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise BadHost(f"invalid IPv6 address {text!r}") from None


def _port(text: str, whole: str, *, allowEmpty: bool) -> int | None:
    """
    @return: the port number, or C{None} if C{text} is empty and allowed to be.
    @raise BadHost: unless C{text} is 1 to 5 digits naming 1 to 65535.
    """
    if not text and allowEmpty:
        return None
    if not _PORT.match(text) or not 0 < int(text) <= 65535:
        raise BadHost(f"invalid port in {whole!r}")
    return int(text)


def _splitAuthority(text: str, *, allowEmptyPort: bool) -> tuple[str, int | None]:
    """
    Split C{host[:port]}, C{[v6]} or C{[v6]:port} into a normalized host and
    a port.

    @raise BadHost: on anything else.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadHost(f"unterminated IPv6 literal in {text!r}")
        host = _ipv6(text[1:end])
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise BadHost(f"junk after IPv6 literal in {text!r}")
        return host, _port(rest[1:], text, allowEmpty=allowEmptyPort)
    if text.count(":") > 1:
        raise BadHost(f"IPv6 address {text!r} must be in brackets")
    name, colon, port = text.partition(":")
    host = _hostName(name)
    if not colon:
        return host, None
    return host, _port(port, text, allowEmpty=allowEmptyPort)


@functools.lru_cache(maxsize=1024)  # pure, and every request asks for its Host's
def normalizeHost(authority: bytes) -> str:
    """
    The host name a request is routed on.

    @param authority: the C{Host} header or C{:authority}: C{host},
        C{host:port}, C{[IPv6]} or C{[IPv6]:port}.
    @return: the host, lowercase, without port or trailing dot; an IPv6
        address in canonical compressed form without brackets (C{::1}).
    @raise BadHost: if C{authority} is not such a value.
    """
    if len(authority) > _MAX_AUTHORITY:
        raise BadHost(f"host too long: {authority[:50]!r}...")
    try:
        text = authority.decode("ascii")
    except UnicodeDecodeError:
        raise BadHost(f"non-ASCII host {authority[:300]!r}") from None
    return _splitAuthority(text, allowEmptyPort=True)[0]


def _mapKey(host: str) -> str:
    """
    Normalize the host of a map entry: a name, an IPv4 address, or an IPv6
    address with or without brackets.  A port is refused: maps route on the
    host alone.
    """
    if ":" in host and not host.startswith("["):
        return _ipv6(host)
    name, port = _splitAuthority(host, allowEmptyPort=False)
    if port is not None:
        raise BadHost(f"host map entries take no port: {host!r}")
    return name


@frozen
class HostMap(Generic[V]):
    """
    A map from host names to values, with wildcards.

    Keys are exact names (C{www.example.com}), wildcards (C{*.example.com}
    matches any name below C{example.com} at any depth, not C{example.com}
    itself) and C{*}, the catch-all.  The most specific key wins: an exact
    name, else the longest matching wildcard, else the catch-all.
    """

    _exact: dict[str, V] = field(factory=dict)
    _wildcards: dict[str, V] = field(factory=dict)
    _catchAll: tuple[V, ...] = ()

    @classmethod
    def parse(
        cls, entries: Iterable[str], parseValue: Callable[[str], V]
    ) -> HostMap[V]:
        """
        Build a map from C{HOST=VALUE} entries, as given on a command line or
        in a configuration file.

        @param entries: the entries; spaces around C{HOST} and C{VALUE} are
            ignored.
        @param parseValue: turns a C{VALUE} into the mapped value; it raises
            C{ValueError} on a bad one.
        @return: the map.
        @raise ValueError: for an entry without C{=}, a bad host or value, or
            a host given twice.
        """
        exact: dict[str, V] = {}
        wildcards: dict[str, V] = {}
        catchAll: list[V] = []
        for entry in entries:
            host, equals, text = entry.partition("=")
            host = host.strip()
            if not equals or not host:
                raise ValueError(f"host map entry {entry!r} is not HOST=VALUE")
            try:
                if host == "*":
                    if catchAll:
                        raise ValueError("duplicate host '*'")
                    catchAll.append(parseValue(text.strip()))
                    continue
                if "*" in host[1:] or (host[0] == "*" and host[:2] != "*."):
                    raise BadHost("'*' is only allowed as a whole first label")
                if host.startswith("*."):
                    table, key = wildcards, _mapKey(host[2:])
                    if ":" in key:
                        raise BadHost("a wildcard needs a name, not an address")
                else:
                    table, key = exact, _mapKey(host)
                if key in table:
                    raise ValueError(f"duplicate host {host!r}")
                table[key] = parseValue(text.strip())
            except ValueError as e:
                raise ValueError(f"host map entry {entry!r}: {e}") from e
        return cls(exact, wildcards, tuple(catchAll))

    def mapValues(self, transform: Callable[[V], W]) -> HostMap[W]:
        """
        The same hosts mapped to transformed values; equal values are
        transformed once and share the result (so hosts served by one
        origin role share one pool of links).

        @param transform: called once per distinct value.
        """
        done: dict[V, W] = {}

        def apply(value: V) -> W:
            if value not in done:
                done[value] = transform(value)
            return done[value]

        return HostMap(
            {k: apply(v) for k, v in self._exact.items()},
            {k: apply(v) for k, v in self._wildcards.items()},
            tuple(apply(v) for v in self._catchAll),
        )

    def values(self) -> list[V]:
        """
        @return: the distinct mapped values, in entry order.
        """
        seen: dict[V, None] = {}
        for table in (self._exact.values(), self._wildcards.values(), self._catchAll):
            for value in table:
                seen.setdefault(value, None)
        return list(seen)

    def hostCount(self) -> int:
        """
        @return: how many host entries (names, wildcards, catch-all) there are.
        """
        return len(self._exact) + len(self._wildcards) + len(self._catchAll)

    def matchingKey(self, host: str) -> str | None:
        """
        The entry that L{lookup} finds for a host, as the map names it: the
        name itself, C{*.SUFFIX} or C{*} (a bounded set, for metric labels).

        @return: the key, or C{None} when no entry matches.
        """
        if host in self._exact:
            return host
        dot = host.find(".")
        while dot >= 0:
            suffix = host[dot + 1 :]
            if suffix in self._wildcards:
                return "*." + suffix
            dot = host.find(".", dot + 1)
        if self._catchAll:
            return "*"
        return None

    def lookup(self, host: str) -> V | None:
        """
        Find the value for a host.

        @param host: a host as L{normalizeHost} returns it.
        @return: the value of the most specific matching key, or C{None}.
        """
        if host in self._exact:
            return self._exact[host]
        # Proper suffixes only, longest first: the bare domain is not
        # matched by its own wildcard.
        dot = host.find(".")
        while dot >= 0:
            suffix = host[dot + 1 :]
            if suffix in self._wildcards:
                return self._wildcards[suffix]
            dot = host.find(".", dot + 1)
        if self._catchAll:
            return self._catchAll[0]
        return None


@frozen
class OriginTarget:
    """
    Where the origin role fetches a host's requests.

    @ivar scheme: C{http} or C{https}.
    @ivar host: the origin server's host name or address (IPv6 without
        brackets).
    @ivar port: its port.
    @ivar basePath: C{""}, or a path prefix such as C{/app} (no trailing
        slash) put before every request target.
    """

    scheme: str
    host: str
    port: int
    basePath: str

    def __attrs_post_init__(self) -> None:
        if self.scheme not in _DEFAULT_PORTS:
            raise ValueError(f"origin scheme {self.scheme!r} is not http or https")
        if not 0 < self.port <= 65535:
            raise ValueError(f"origin port {self.port!r} out of range")
        if self.basePath and (
            not self.basePath.startswith("/")
            or self.basePath.endswith("/")
            or not _BASE_PATH.match(self.basePath)
        ):
            raise ValueError(f"invalid origin base path {self.basePath!r}")

    @property
    def authority(self) -> bytes:
        """
        C{host[:port]} as in a URL, the port left out when it is the default.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != _DEFAULT_PORTS[self.scheme]:
            host = f"{host}:{self.port}"
        return host.encode("ascii")

    def urlFor(self, path: bytes) -> bytes:
        """
        The URL of a request target on this origin.

        @param path: the request target in origin-form (C{/path?query}),
            bytes kept exactly: no normalization, no re-quoting; or C{*},
            the asterisk form of C{OPTIONS *}.
        @return: C{scheme://authority} + C{basePath} + C{path}; for C{*},
            C{scheme://authority*} (no base path: the asterisk form asks
            about the server as a whole). That is not a URL, but the form
            L{railgun._compat.httpclient.ExactTargetAgent} sends as
            C{OPTIONS * HTTP/1.1} to C{authority}.
        @raise ValueError: if C{path} is neither C{*} nor starts with C{/},
            or holds whitespace, a control character or C{#}, which would
            change or break the URL.
        """
        if path == b"*":
            return self.scheme.encode("ascii") + b"://" + self.authority + b"*"
        if not _TARGET.match(path):
            raise ValueError(f"request target {path[:200]!r} is not origin-form")
        return (
            self.scheme.encode("ascii")
            + b"://"
            + self.authority
            + self.basePath.encode("ascii")
            + path
        )


def parseOriginURL(text: str) -> OriginTarget:
    """
    Parse an origin server URL from the configuration, such as
    C{https://origin.example.com:8443/app}.

    @param text: the URL; surrounding spaces are ignored.
    @return: the target, with the port defaulting to 80 or 443.
    @raise ValueError: for a scheme other than C{http} or C{https}, userinfo,
        a query or fragment, a bad host or port, or a bad path.
    """
    url = text.strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"origin URL {text!r} must start with http:// or https://")
    if "?" in rest or "#" in rest:
        raise ValueError(f"origin URL {text!r} must not have a query or fragment")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        raise ValueError(f"origin URL {text!r} must not have userinfo")
    if not authority:
        raise ValueError(f"origin URL {text!r} has no host")
    try:
        host, port = _splitAuthority(authority, allowEmptyPort=False)
    except BadHost as e:
        raise ValueError(f"origin URL {text!r}: {e}") from None
    if not _BASE_PATH.match(path):
        raise ValueError(f"origin URL {text!r} has an invalid path")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    return OriginTarget(scheme=scheme, host=host, port=port, basePath=path.rstrip("/"))


@frozen
class LinkAddress:
    """
    Where the edge dials an origin role's link listener.

    @ivar host: a host name or address (IPv6 without brackets).
    @ivar port: the TCP port.
    """

    host: str
    port: int = DEFAULT_LINK_PORT

    def __attrs_post_init__(self) -> None:
        if not self.host:
            raise ValueError("link address has no host")
        if not 0 < self.port <= 65535:
            raise ValueError(f"link port {self.port!r} out of range")

    def __str__(self) -> str:
        # As it is written in --link (and in logs).
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@frozen
class LinkGroup:
    """
    The origin roles serving one host: the edge spreads that host's streams
    over links to all of them, and moves off one that drains or dies.

    @ivar addresses: one or more distinct addresses, in configured order.
    """

    addresses: tuple[LinkAddress, ...]

    def __attrs_post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("a link group needs at least one address")
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError("the same link address is given twice")

    def __str__(self) -> str:
        return ",".join(str(address) for address in self.addresses)


def parseLinkGroup(text: str) -> LinkGroup:
    """
    Parse one or more link addresses separated by commas
    (C{a.example:2408,b.example:2408}).

    @raise ValueError: for a bad address or one given twice.
    """
    return LinkGroup(tuple(parseLinkAddress(part) for part in text.split(",")))


def parseLinkAddress(text: str) -> LinkAddress:
    """
    Parse a link address: C{name}, C{name:port}, C{1.2.3.4:port},
    C{[::1]} or C{[::1]:port}.

    @param text: the address; surrounding spaces are ignored.
    @return: the address, the port defaulting to L{DEFAULT_LINK_PORT}.
    @raise ValueError: for anything else, including an IPv6 address without
        brackets, and a C{unix:} path (an edge dials links over TCP).
    """
    if text.strip().startswith("unix:"):
        raise ValueError(
            f"link address {text!r}: an edge dials links over TCP only: give HOST[:PORT]"
        )
    try:
        host, port = _splitAuthority(text.strip(), allowEmptyPort=False)
    except BadHost as e:
        raise ValueError(f"link address {text!r}: {e}") from None
    return LinkAddress(host, DEFAULT_LINK_PORT if port is None else port)

"""
How an HTTP request or response head travels in a link HEADERS block.

A block is a header list in the HTTP/2 style: pseudo-headers (C{:method},
C{:scheme}, C{:authority}, C{:path}, or C{:status}) first, then the regular
end-to-end headers with lowercase names.  Link-control headers ride in the
regular list under the reserved C{railgun-} prefix; L{splitControl} and
L{stripControl} keep them away from clients and origin servers.

Every L{RequestHead} and L{ResponseHead} is valid by construction (the
constructor raises L{BadMessage}), so a head built from a client's request or
an origin's response can always be encoded, and a decoded block can always be
trusted to be well-formed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from attrs import field, frozen

from railgun.http.headers import (
    HeaderList,
    validHeaderName,
    validHeaderValue,
    validHeaderValues,
)

CONTROL_PREFIX = b"railgun-"
"""
The reserved name prefix of link-control headers.
"""

CONTROL_BASE = b"railgun-base"
"""
Edge to origin role: the digest of the version the edge holds for this URL.
"""

CONTROL_BODY = b"railgun-body"
"""
Origin role to edge: how the body crosses the link (same, delta, full, raw).
"""

CONTROL_DIGEST = b"railgun-digest"
"""
Origin role to edge: the digest of the identity body the edge must rebuild.
"""

_REQUEST_PSEUDO = (b":method", b":scheme", b":authority", b":path")
_REQUEST_PSEUDO_LIST = list(_REQUEST_PSEUDO)
_RESPONSE_PSEUDO = (b":status",)
_SCHEMES = frozenset({b"http", b"https"})
_UPPER = re.compile(rb"[A-Z]")

# RFC 3986 3.2.2-3.2.3: host [ ":" port ], host being a non-empty reg-name
# (unreserved / pct-encoded / sub-delims; this includes IPv4 addresses) or
# an IP literal in brackets (checked further with ipaddress).
_AUTHORITY = re.compile(
    rb"(?:(?P<name>(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"
    rb"|\[(?P<literal>[0-9A-Fa-f:.]+)\])"
    rb"(?::[0-9]{0,5})?\Z"
)

# The request target in origin-form: visible ASCII and obs-text, no
# whitespace or control characters, and no fragment (never sent on the wire).
_PATH = re.compile(rb"/[\x21\x22\x24-\x7e\x80-\xff]*\Z")

# A final status: interim (1xx) responses never cross the link (the origin
# role's HTTP client skips them, RFC 9110 15.2), so a 1xx head from a peer is
# malformed.
_STATUS = re.compile(rb"[2-5][0-9][0-9]\Z")


class BadMessage(Exception):
    """
    A message head that cannot be carried or accepted.

    @ivar reason: what is wrong, for logs and error responses.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _show(value: object) -> str:
    # Reasons end up in logs and error pages: keep them short.
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def _copyHeaders(headers: Iterable[tuple[bytes, bytes]]) -> HeaderList:
    # A private copy, so a frozen head does not change when the caller's
    # list does; entries are checked after conversion.
    return list(headers)


def _checkEntry(entry: object) -> tuple[bytes, bytes]:
    """
    @raise BadMessage: unless C{entry} is a pair of bytes.
    """
    if (
        isinstance(entry, tuple)
        and len(entry) == 2
        and isinstance(entry[0], bytes)
        and isinstance(entry[1], bytes)
    ):
        return entry[0], entry[1]
    raise BadMessage(f"header entry {_show(entry)} is not a pair of bytes")


# The common case (every request and response goes through here twice)
# is checked with two regular expression matches for the whole list, names
# and then values, each joined with LF (which no valid name or value
# contains; the LF count is checked, so an LF inside one cannot pass for a
# separator). The per-entry checks only run when that fails, to say what is
# wrong.
_LOWER_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9a-z]+"
_LOWER_NAMES = re.compile(rb"(?:%s\n)*%s\Z" % (_LOWER_TOKEN, _LOWER_TOKEN)).match
_isLowerToken = re.compile(_LOWER_TOKEN + rb"\Z").match


def _allRegularValid(headers: HeaderList) -> bool:
    """
    The fast check: whether every entry is a plain tuple of two L{bytes},
    with a lowercase token name and a valid value. C{False} says nothing
    about which entry is wrong, nor even that one is (tuple subclasses take
    the slow path).
    """
    names = []
    values = []
    for entry in headers:
        if entry.__class__ is not tuple or len(entry) != 2:
            return False
        name, value = entry
        if name.__class__ is not bytes or value.__class__ is not bytes:
            return False
        names.append(name)
        values.append(value)
    if not names:
        return True
    joined = b"\n".join(names)
    return (
        joined.count(b"\n") == len(names) - 1
        and _LOWER_NAMES(joined) is not None
        and validHeaderValues(values)
    )


def _checkRegular(headers: HeaderList) -> None:
    """
    @raise BadMessage: unless every entry is a lowercase, valid name with a
        valid value.
    """
    if _allRegularValid(headers):
        return
    for entry in headers:
        if (
            isinstance(entry, tuple)
            and len(entry) == 2
            and isinstance(entry[0], bytes)
            and isinstance(entry[1], bytes)
            and _isLowerToken(entry[0])
            and validHeaderValue(entry[1])
        ):
            continue
        _explainRegular(entry)


def _explainRegular(entry: object) -> None:
    """
    @raise BadMessage: saying what is wrong with a header entry (the full
        checks, for an entry the fast ones did not pass).
    """
    name, value = _checkEntry(entry)
    if name.startswith(b":"):
        raise BadMessage(f"pseudo-header {_show(name)} after regular headers")
    if _UPPER.search(name):
        raise BadMessage(f"header name {_show(name)} is not lowercase")
    if not validHeaderName(name):
        raise BadMessage(f"invalid header name {_show(name)}")
    if not validHeaderValue(value):
        raise BadMessage(f"invalid value for header {_show(name)}")


def _checkAuthority(authority: bytes) -> None:
    match = _AUTHORITY.match(authority)
    if match is not None and match.group("literal") is not None:
        try:
            ipaddress.IPv6Address(match.group("literal").decode("ascii"))
        except ValueError:
            match = None
    if match is None:
        raise BadMessage(f"invalid :authority {_show(authority)}")


def _splitPseudo(
    block: Iterable[tuple[bytes, bytes]], allowed: tuple[bytes, ...]
) -> tuple[dict[bytes, bytes], HeaderList]:
    """
    Separate a block into its pseudo-headers and its regular headers.

    @raise BadMessage: for an entry that is not a pair of bytes, or an
        unknown, duplicate, missing or misplaced pseudo-header.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: HeaderList = []
    for entry in block:
        name, value = _checkEntry(entry)
        if name.startswith(b":"):
            if regular:
                raise BadMessage(f"pseudo-header {_show(name)} after regular headers")
            if name not in allowed:
                raise BadMessage(f"unknown pseudo-header {_show(name)}")
            if name in pseudo:
                raise BadMessage(f"duplicate pseudo-header {_show(name)}")
            pseudo[name] = value
        else:
            regular.append((name, value))
    for name in allowed:
        if name not in pseudo:
            raise BadMessage(f"missing pseudo-header {_show(name)}")
    return pseudo, regular


@frozen
class RequestHead:
    """
    A request line and its end-to-end headers, as the edge forwards them.

    The client's C{Host} travels as C{authority} only: a C{host} entry in
    C{headers} is refused, so the host the edge routed on is the only one the
    origin role and the origin server can see.

    @ivar method: the method, an RFC 9110 token (C{GET}).
    @ivar scheme: C{http} or C{https}: how the client reached the edge.
    @ivar authority: the client's C{Host}: C{host[:port]}.
    @ivar path: the request target in origin-form (C{/path?query}), or C{*}
        for C{OPTIONS}; bytes kept exactly as received.
    @ivar headers: the end-to-end headers, lowercase names, in order.
    """

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: HeaderList = field(converter=_copyHeaders)

    def __attrs_post_init__(self) -> None:
        for attribute in ("method", "scheme", "authority", "path"):
            if not isinstance(getattr(self, attribute), bytes):
                raise BadMessage(f"{attribute} must be bytes")
        if not validHeaderName(self.method):
            raise BadMessage(f"invalid :method {_show(self.method)}")
        if self.scheme not in _SCHEMES:
            raise BadMessage(f"invalid :scheme {_show(self.scheme)}")
        _checkAuthority(self.authority)
        if self.path == b"*":
            if self.method != b"OPTIONS":
                raise BadMessage(f"path '*' with method {_show(self.method)}")
        elif not _PATH.match(self.path):
            raise BadMessage(f"invalid :path {_show(self.path)}")
        _checkRegular(self.headers)
        for name, _ in self.headers:
            if name == b"host":
                raise BadMessage("the host header must travel as :authority")

    def toLinkHeaders(self) -> HeaderList:
        """
        Encode this head as a link header block.

        @return: the pseudo-headers, then the regular headers.
        """
        return [
            (b":method", self.method),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", self.path),
        ] + self.headers

    @classmethod
    def fromLinkHeaders(cls, block: Iterable[tuple[bytes, bytes]]) -> RequestHead:
        """
        Decode a link header block sent by L{toLinkHeaders}.

        @param block: the decoded header list.
        @return: the request head.
        @raise BadMessage: if a pseudo-header is missing, duplicated, unknown
            or after a regular header, or a name or value is invalid.
        """
        block = list(block)
        if [
            entry[0]
            for entry in block[:4]
            if entry.__class__ is tuple and len(entry) == 2
        ] == _REQUEST_PSEUDO_LIST:
            # The order toLinkHeaders writes: the constructor checks the rest.
            try:
                return cls(
                    method=block[0][1],
                    scheme=block[1][1],
                    authority=block[2][1],
                    path=block[3][1],
                    headers=block[4:],
                )
            except BadMessage:
                pass  # the full parse below says exactly what is wrong
        pseudo, regular = _splitPseudo(block, _REQUEST_PSEUDO)
        return cls(
            method=pseudo[b":method"],
            scheme=pseudo[b":scheme"],
            authority=pseudo[b":authority"],
            path=pseudo[b":path"],
            headers=regular,
        )


def _checkStatus(status: object) -> int:
    if type(status) is not int or not 200 <= status <= 599:
        raise BadMessage(f"invalid :status {_show(status)}")
    return status


@frozen
class ResponseHead:
    """
    A response status and its end-to-end headers, as the origin role returns
    them.

    A stream carries one response, the final one: an interim (1xx) status is
    refused, on the way out and on the way in (the origin role's HTTP client
    skips interim responses; one from a peer is a malformed head, never
    taken for the final response).

    @ivar status: the status code, 200 to 599.
    @ivar headers: the end-to-end headers, lowercase names, in order.
    """

    status: int
    headers: HeaderList = field(converter=_copyHeaders)

    def __attrs_post_init__(self) -> None:
        _checkStatus(self.status)
        _checkRegular(self.headers)

    def toLinkHeaders(self) -> HeaderList:
        """
        Encode this head as a link header block.

        @return: C{:status} as three digits, then the regular headers.
        """
        return [(b":status", b"%d" % (self.status,))] + self.headers

    @classmethod
    def fromLinkHeaders(cls, block: Iterable[tuple[bytes, bytes]]) -> ResponseHead:
        """
        Decode a link header block sent by L{toLinkHeaders}.

        @param block: the decoded header list.
        @return: the response head.
        @raise BadMessage: if C{:status} is missing, duplicated, not three
            digits from 200 to 599 (1xx included: see the class docstring),
            if another pseudo-header appears, or a name or value is invalid.
        """
        block = list(block)
        if block and block[0].__class__ is tuple and len(block[0]) == 2:
            name, status = block[0]
            if (
                name == b":status"
                and status.__class__ is bytes
                and _STATUS.match(status)
            ):
                # The order toLinkHeaders writes: the constructor checks the
                # rest.
                try:
                    return cls(status=int(status), headers=block[1:])
                except BadMessage:
                    pass  # the full parse below says exactly what is wrong
        pseudo, regular = _splitPseudo(block, _RESPONSE_PSEUDO)
        status = pseudo[b":status"]
        if not _STATUS.match(status):
            raise BadMessage(f"invalid :status {_show(status)}")
        return cls(status=int(status), headers=regular)


_CONTROL_PREFIX_LENGTH = len(CONTROL_PREFIX)


def _isControl(name: bytes) -> bool:
    return name[:_CONTROL_PREFIX_LENGTH].lower() == CONTROL_PREFIX


def splitControl(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[HeaderList, dict[bytes, bytes]]:
    """
    Separate link-control headers from end-to-end headers.

    @param headers: a regular header list from a link block.
    @return: C{(endToEnd, control)}: the headers without any C{railgun-*}
        entry, in order, and the control headers keyed by their full
        lowercase name (for example L{CONTROL_BASE}).
    @raise BadMessage: if a control header appears twice.
    """
    endToEnd: HeaderList = []
    control: dict[bytes, bytes] = {}
    for name, value in headers:
        # (_isControl, inline: this runs for every header of every response.)
        if name[:_CONTROL_PREFIX_LENGTH].lower() == CONTROL_PREFIX:
            key = name.lower()
            if key in control:
                raise BadMessage(f"duplicate control header {_show(key)}")
            control[key] = value
        else:
            endToEnd.append((name, value))
    return endToEnd, control


def stripControl(headers: Iterable[tuple[bytes, bytes]]) -> HeaderList:
    """
    Drop every C{railgun-*} header, whatever its case.

    The edge applies this to what a client sends and the origin role to what
    an origin server sends, so neither can forge or read link control.

    @param headers: a header list from outside the link.
    @return: a new list without control headers.
    """
    return [(name, value) for name, value in headers if not _isControl(name)]


def responseHasBody(method: bytes, status: int) -> bool:
    """
    Whether a response carries a body (RFC 9110 6.4.1).

    @param method: the request method.
    @param status: the response status.
    @return: C{False} for a response to C{HEAD} and for 1xx, 204 and 304.
    """
    if method == b"HEAD":
        return False
    return not (100 <= status < 200 or status in (204, 304))


def announcedLength(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """
    The body length a message's C{Content-Length} announces.

    @param headers: a header list with lowercase names.
    @return: the length, or L{None} when there is no C{Content-Length}.
    @raise BadMessage: for a value that is not 1*DIGIT (RFC 9110 8.6;
        Python's C{int()} would take C{-1}, C{+5} or C{1_0}), or several
        values that differ.
    """
    lengths = {value for name, value in headers if name == b"content-length"}
    if not lengths:
        return None
    if len(lengths) > 1:
        raise BadMessage("conflicting content-length values")
    (value,) = lengths
    if not (value.isdigit() and value.isascii()):
        raise BadMessage(f"invalid content-length {_show(value)}")
    return int(value)

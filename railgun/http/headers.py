"""
Header-list helpers shared by the edge and origin roles.

Headers are handled everywhere as C{list[tuple[bytes, bytes]]} with lowercase
names, in wire order, repeated names allowed.  Every function here returns a
new list and never mutates its argument.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence

HeaderList = list[tuple[bytes, bytes]]

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
"""
Connection-specific header names (RFC 9110 section 7.6.1, plus the
non-standard C{keep-alive} and C{proxy-connection}) that a proxy must not
forward.
"""

# RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
# / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")

# RFC 9110 5.5: field-value = *field-content; field-content = field-vchar
# [ 1*( SP / HTAB / field-vchar ) field-vchar ]; field-vchar = VCHAR / obs-text.
# So: no CTL other than HTAB, no DEL, no leading or trailing whitespace.
_FIELD_VALUE_SOURCE = (
    rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
)
_FIELD_VALUE = re.compile(_FIELD_VALUE_SOURCE + rb"\Z")
# Values joined with LF (which no valid value contains), for one match over
# a whole list.
_FIELD_VALUES = re.compile(
    rb"(?:%s\n)*%s\Z" % (_FIELD_VALUE_SOURCE, _FIELD_VALUE_SOURCE)
)

# RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")

# RFC 7239 6.3: obfnode = "_" 1*( ALPHA / DIGIT / "." / "_" / "-")
_OBFNODE = re.compile(r"_[A-Za-z0-9._\-]+\Z")

# RFC 9110 5.6.4: what a quoted-string can carry, with " and \ escaped.
_QUOTABLE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")

_OWS = b" \t"


def validHeaderName(name: bytes) -> bool:
    """
    Whether C{name} is a valid field name: an RFC 9110 token.

    @param name: a header name.
    @return: C{True} if C{name} is a non-empty token.
    """
    return _TOKEN.match(name) is not None


def validHeaderValue(value: bytes) -> bool:
    """
    Whether C{value} is a valid RFC 9110 field value.

    This rejects CR, LF and NUL (which would allow header injection) and every
    other control character but HTAB, and leading or trailing whitespace
    (which HTTP/1.1 parsers strip, so such a value cannot round-trip).

    @param value: a header value.
    @return: C{True} if C{value} matches the field-value grammar; the empty
        value is valid.
    """
    return _FIELD_VALUE.match(value) is not None


def validHeaderValues(values: Sequence[bytes]) -> bool:
    """
    Whether every value of C{values} is valid, as L{validHeaderValue} says,
    in one regular expression match instead of one per value (the values are
    joined with LF, and an LF inside a value is caught by counting them).

    @param values: header values, all L{bytes}.
    @return: C{True} if every value is valid (also when there is none).
    """
    if not values:
        return True
    joined = b"\n".join(values)
    return (
        joined.count(b"\n") == len(values) - 1
        and _FIELD_VALUES.match(joined) is not None
    )


def headerListSize(headers: Iterable[tuple[bytes, bytes]]) -> int:
    """
    The size of a header list as HTTP/2 counts it for
    C{SETTINGS_MAX_HEADER_LIST_SIZE}: name plus value plus 32 per entry.

    @param headers: the header list.
    @return: the size in octets.
    """
    return sum(len(name) + len(value) + 32 for name, value in headers)


def fromRawHeaders(raw: Iterable[tuple[bytes, Sequence[bytes]]]) -> HeaderList:
    """
    Flatten grouped headers, such as
    C{twisted.web.http_headers.Headers.getAllRawHeaders()} gives, into a
    header list with lowercase names.

    Twisted groups values by name and capitalizes names, so the relative
    order of different names is the grouping order; the order of the values
    of one name is kept.

    @param raw: C{(name, [value, ...])} pairs.
    @return: one C{(lowercase name, value)} entry per value.
    """
    return [(name.lower(), value) for name, group in raw for value in group]


def connectionTokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """
    The header names listed by the C{Connection} headers of C{headers}
    (RFC 9110 7.6.1): those must not be forwarded either.

    @param headers: a header list, names in any case.
    @return: the listed names, lowercase.
    """
    tokens = set()
    for name, value in headers:
        if name.lower() == b"connection":
            for token in value.split(b","):
                token = token.strip(_OWS).lower()
                if token:
                    tokens.add(token)
    return tokens


def stripHopByHop(headers: Iterable[tuple[bytes, bytes]]) -> HeaderList:
    """
    Remove the connection-specific headers before forwarding a message.

    Removes every name in L{HOP_BY_HOP} and every header named by a token of
    any C{Connection} header (RFC 9110 7.6.1).  Names are compared
    case-insensitively, so a list with non-lowercase names is still cleaned.

    @param headers: the received header list.
    @return: a new list with the end-to-end headers, in their order.
    """
    headers = list(headers)
    lowered = [name.lower() for name, _ in headers]
    if HOP_BY_HOP.isdisjoint(lowered):
        # The usual case: nothing to drop (without a Connection header, no
        # other name is connection-specific).
        return headers
    drop = HOP_BY_HOP | connectionTokens(headers)
    return [
        entry for entry, name in zip(headers, lowered, strict=True) if name not in drop
    ]


@functools.lru_cache(maxsize=4096)  # pure; clients come back again and again
def _nodeAddress(clientAddress: str) -> tuple[str, str]:
    """
    Parse the client's address for X-Forwarded-For and Forwarded.

    @return: C{(xForwardedFor, forwardedNode)}: the address as X-Forwarded-For
        writes it, and as an RFC 7239 C{node} value, quoted where needed.
    @raise ValueError: if C{clientAddress} is neither an IP address, nor
        C{unknown}, nor an RFC 7239 obfuscated identifier.
    """
    if clientAddress == "unknown" or _OBFNODE.match(clientAddress):
        return clientAddress, clientAddress
    try:
        address = ipaddress.ip_address(clientAddress)
    except ValueError:
        raise ValueError(
            f"client address {clientAddress!r} is not an IP address, "
            "'unknown' or an obfuscated identifier"
        ) from None
    if isinstance(address, ipaddress.IPv6Address):
        # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; the
        # origin wants the IPv4 address.  A zone id means nothing off this
        # host, and RFC 7239's node grammar has no room for it.
        if address.ipv4_mapped is not None:
            text = str(address.ipv4_mapped)
            return text, text
        text = str(ipaddress.IPv6Address(address.packed))
        return text, f'"[{text}]"'
    text = str(address)
    return text, text


def _forwardedValue(value: bytes) -> bytes:
    """
    Write C{value} as an RFC 7239 C{value}: a token, or else a quoted-string.

    @raise ValueError: if C{value} holds a character a quoted-string cannot.
    """
    if _TOKEN.match(value):
        return value
    if not _QUOTABLE.match(value):
        raise ValueError(f"cannot write {value!r} in a Forwarded header")
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _appendElement(headers: HeaderList, name: bytes, element: bytes) -> HeaderList:
    """
    Append a list element to the header C{name}, joining every existing
    C{name} header and the new element with C{", "} into one header at the
    place of the first one (RFC 9110 5.3 allows this combination).
    """
    existing = [value for n, value in headers if n.lower() == name]
    if not existing:
        return headers + [(name, element)]
    combined = b", ".join([v for v in existing if v.strip(_OWS)] + [element])
    result: HeaderList = []
    done = False
    for n, value in headers:
        if n.lower() == name:
            if not done:
                result.append((name, combined))
                done = True
        else:
            result.append((n, value))
    return result


def addForwarding(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    clientAddress: str,
    host: bytes | None,
    proto: str,
    via: bytes = b"1.1 railgun",
) -> HeaderList:
    """
    Record this proxy hop in C{X-Forwarded-For}, C{Forwarded} (RFC 7239) and
    C{Via} (RFC 9110 7.6.3).

    Each is appended to any existing value with C{", "} so the origin sees the
    whole chain.  An IPv6 client is written bare in X-Forwarded-For, and
    quoted and bracketed in Forwarded (C{for="[2001:db8::1]"}); an
    IPv4-mapped IPv6 address is written as the IPv4 address.

    @param headers: the header list to extend.
    @param clientAddress: the client's IP address as text (or C{unknown}, or
        an RFC 7239 obfuscated identifier such as C{_hidden}).
    @param host: the C{Host} the client asked for, or C{None} to leave out
        C{host=}.
    @param proto: the scheme the client used, C{http} or C{https}.
    @param via: this hop's Via element: protocol version and pseudonym.
    @return: a new header list.
    @raise ValueError: if an argument cannot be written in its header.
    """
    if not _SCHEME.match(proto):
        raise ValueError(f"proto {proto!r} is not a URI scheme")
    if not via or not validHeaderValue(via):
        raise ValueError(f"via {via!r} is not a valid header value")
    xff, node = _nodeAddress(clientAddress)
    pairs = [b"for=" + node.encode("ascii")]
    if host is not None:
        pairs.append(b"host=" + _forwardedValue(host))
    pairs.append(b"proto=" + proto.lower().encode("ascii"))
    result = list(headers)
    result = _appendElement(result, b"x-forwarded-for", xff.encode("ascii"))
    result = _appendElement(result, b"forwarded", b";".join(pairs))
    return _appendElement(result, b"via", via)


#: Request fields that decide how a message is routed (C{Host}) or framed
#: (C{Content-Length}, C{Transfer-Encoding}): one of each at most, and never
#: both lengths, or the edge and the server behind it could read two
#: different requests from the same bytes (request smuggling).
_FRAMING_NAMES = {
    b"host": "Host",
    b"content-length": "Content-Length",
    b"transfer-encoding": "Transfer-Encoding",
}
FRAMING_FIELDS: frozenset[bytes] = frozenset(_FRAMING_NAMES)


def requestFieldProblem(
    name: bytes, value: bytes, seen: frozenset[bytes]
) -> tuple[int, str] | None:
    """
    Why a request header field must be refused, as RFC 9112 wants a server
    (and a proxy, which hands the message on) to refuse it.

    Refused with 400: a name that is not a token (whitespace before the
    colon included, RFC 9112 5.1); a second C{Host} (3.2); a second
    C{Content-Length} even with the same value, or one that is not digits
    (6.3); a C{Transfer-Encoding} together with a C{Content-Length} (6.1), a
    second C{Transfer-Encoding} header, or one whose final coding is not
    C{chunked} or that applies C{chunked} twice (6.3, 7). Refused with 501:
    a transfer coding other than C{chunked} before it (6.1: a coding the
    server does not implement).

    @param name: the field name as received (any case).
    @param value: the field value, whitespace around it stripped.
    @param seen: the lowercase names of L{FRAMING_FIELDS} already received
        in this request head.
    @return: C{(status, why)}, or L{None} when the field is acceptable.
    """
    if not validHeaderName(name):
        return 400, "invalid header field name (whitespace before the colon?)"
    lowered = name.lower()
    if lowered not in FRAMING_FIELDS:
        return None
    if lowered in seen:
        return 400, f"more than one {_FRAMING_NAMES[lowered]} header"
    if lowered == b"host":
        return None
    if b"content-length" in seen or b"transfer-encoding" in seen:
        return 400, "both Content-Length and Transfer-Encoding"
    if lowered == b"content-length":
        if not value.isdigit():
            return 400, "invalid Content-Length"
        return None
    codings = [coding.strip(_OWS).lower() for coding in value.split(b",")]
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        return 400, "Transfer-Encoding must end with chunked, once"
    if len(codings) > 1:
        return 501, "no transfer coding but chunked is supported"
    return None


#: Letters a method token must not hold: see L{methodProblem}.
_LOWERCASE = re.compile(rb"[a-z]")


def methodProblem(method: bytes) -> str | None:
    """
    Why the edge refuses a request method (400), or L{None}.

    Methods are case-sensitive (RFC 9110 9.1): C{get} is not C{GET}, and
    every registered method is upper-case. A proxy can neither forward a
    lower-case method as is (the origin role's HTTP client, treq,
    upper-cases every method it sends) nor upper-case it (that would turn an
    unknown method into a known one, and C{head} into C{HEAD}, which
    changes how the response is framed). So a method with a lower-case
    letter is refused, as nginx refuses it; any other token is forwarded
    unchanged.

    @param method: the method from the request line.
    @return: a reason for the client, or L{None} when it is forwarded.
    """
    if not validHeaderName(method):
        return "the method is not a token"
    if _LOWERCASE.search(method) is not None:
        return "methods are case-sensitive: a lower-case method is not forwarded"
    return None

"""
Which exchanges may be shared across users: the one policy both roles apply
before a response becomes a version (the edge's latest version of a URL,
the origin role's store, the edge's sibling index) or is encoded against
one.

A version is a base for I{the next user's} response to the same URL (or a
sibling URL). A response meant for one user only, used that way, is a
compression oracle: the next user, reflecting chosen text into their own
page, learns from the size of the delta (or from the C{Railgun} header's
ratio) how much of it the other user's page contains (CRIME/BREACH). So a
response is shared only when the origin did not say it is one user's, by
the rules a shared HTTP cache follows (RFC 9111 3, 3.5; RFC 6265 8.3):

  - the request carried no C{Authorization};
  - the response has no C{Cache-Control: private} (with or without field
    names) and no C{no-store};
  - the response sets no cookie (C{Set-Cookie}, C{Set-Cookie2});
  - when the request carried a C{Cookie}, the response does not vary on it
    (C{Vary: Cookie}, or C{Vary: *}).

A request with a C{Cookie} whose response says none of this (a site's
ordinary pages, sent to logged-in and anonymous users alike) stays
shareable: the origin declared it is the same for everyone, as it does to
any CDN. Pure functions over lowercase header lists; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

Headers = Iterable[tuple[bytes, bytes]]

#: response headers that set a cookie (RFC 6265; RFC 2965, obsolete).
_SETS_COOKIE = frozenset([b"set-cookie", b"set-cookie2"])

#: Cache-Control directives that make a response one user's or unstorable.
_PRIVATE_DIRECTIVES = frozenset([b"private", b"no-store"])


def _directives(value: bytes) -> set[bytes]:
    """
    The directive names of a C{Cache-Control} or the field names of a
    C{Vary} value, lowercase.

    A comma inside a quoted argument (C{private="a, b"}) makes a fragment
    such as C{b"} a name too: harmless, it names nothing this module looks
    for (and any mistake it could make only makes an exchange private).
    """
    names = set()
    for part in value.split(b","):
        name = part.split(b"=", 1)[0].strip().lower()
        if name:
            names.add(name)
    return names


def carriesCredentials(requestHeaders: Headers) -> bool:
    """
    Whether a request carries a user's credentials: C{Authorization} or a
    C{Cookie}.

    @param requestHeaders: the request's end-to-end headers, names lowercase.
    """
    return any(name in (b"authorization", b"cookie") for name, _ in requestHeaders)


def requestShareable(requestHeaders: Headers) -> bool:
    """
    Whether a response to this request may be shared at all, before the
    response is known: not when the request carried C{Authorization}. The
    edge names no base for such a request.

    @param requestHeaders: the request's end-to-end headers, names lowercase.
    """
    return not any(name == b"authorization" for name, _ in requestHeaders)


def exchangeShareable(requestHeaders: Headers, responseHeaders: Headers) -> bool:
    """
    Whether a response may become a version shared across users, or be
    encoded against one (see the module docstring for the rules).

    @param requestHeaders: the request's end-to-end headers, names lowercase.
    @param responseHeaders: the response's end-to-end headers, names
        lowercase.
    @return: C{False} when the exchange is one user's.
    """
    cookie = False
    for name, _ in requestHeaders:
        if name == b"authorization":
            return False
        if name == b"cookie":
            cookie = True
    for name, value in responseHeaders:
        if name in _SETS_COOKIE:
            return False
        if name == b"cache-control":
            if _directives(value) & _PRIVATE_DIRECTIVES:
                return False
        elif name == b"vary" and cookie:
            varies = _directives(value)
            if b"cookie" in varies or b"*" in varies:
                return False
    return True


__all__ = ["carriesCredentials", "exchangeShareable", "requestShareable"]

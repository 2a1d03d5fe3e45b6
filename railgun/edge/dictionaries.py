"""
Compression Dictionary Transport (RFC 9842) from the edge to the browser.

The edge offers a version it serves as a dictionary (C{Use-As-Dictionary:
match="..."}), keeps it by the SHA-256 of its identity bytes, and answers a
later request naming that hash in C{Available-Dictionary} with
C{Content-Encoding: dcz}: the new version as a zstd frame with the old one as
its raw-content prefix, which is the delta the link already carries, taken
all the way to the browser. See docs/http.md, "Compression dictionaries".

The parsing, the policy and the codec are pure functions; L{Dictionaries}
ties them to the edge's version store.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
from collections.abc import Callable, Iterable
from email.utils import parsedate_tz
from typing import Any

import zstandard
from attrs import define
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from railgun.delta.codec import ZstdPatchCodec
from railgun.edge.encodings import ClientEncodings
from railgun.http.routing import HostMap
from railgun.stores.interfaces import IVersionStore

log = Logger()

#: the 8 bytes that start a C{dcz} body (RFC 9842 4.2), then the 32-byte
#: SHA-256 of the dictionary, then the zstd frame.
DCZ_MAGIC = b"\x5e\x2a\x4d\x18\x20\x00\x00\x00"

#: the content coding.
DCZ = b"dcz"

#: store keys of the versions offered as dictionaries: this prefix, the
#: host, a space and the SHA-256 of the identity body (32 bytes).  (URL keys
#: are the host, a space and the path: no host starts with a NUL.)
STORE_PREFIX = b"\x00dictionary "


def storeKey(host: str, digest: bytes) -> bytes:
    """
    Where the version of C{host} whose SHA-256 is C{digest} is kept: a
    dictionary is only ever used for the host that offered it, as browsers
    only name a dictionary to the origin it came from (RFC 9842 2.2).
    """
    return STORE_PREFIX + host.encode("utf-8") + b" " + digest


#: zstd level of C{dcz} bodies: that of the link's deltas (see
#: docs/benchmarks.md, "Codec").
DCZ_LEVEL = 9

# Keeps compressors with their hashed dictionary: the clients holding the
# same previous version get the next one from the same compressor.
_CODEC = ZstdPatchCodec(DCZ_LEVEL, cacheBytes=16 * 1024 * 1024)

#: the response header a dictionary is offered with.
USE_AS_DICTIONARY = b"use-as-dictionary"

# URLPattern's syntax characters (escaped with a backslash in a pattern),
# and what a structured-field string must escape.
_PATTERN_SPECIAL = re.compile(r"([\\*+?(){}:])")
_SF_ESCAPE = re.compile(r'(["\\])')
_PRINTABLE = re.compile(rb"^[\x21-\x7e]*$")

HeaderList = list[tuple[bytes, bytes]]


def sha256(body: bytes) -> bytes:
    """
    @return: the SHA-256 a browser names C{body} by, 32 bytes.
    """
    return hashlib.sha256(body).digest()


def parseAvailableDictionary(values: list[bytes] | None) -> bytes | None:
    """
    The dictionary hash a request names (RFC 9842 2.2: an sf-binary item,
    C{:base64:}, of a SHA-256).

    @param values: the C{Available-Dictionary} header values, or L{None}.
    @return: 32 bytes, or L{None} when absent, repeated or malformed.
    """
    if not values or len(values) != 1:
        return None
    value = values[0].strip()
    if len(value) < 2 or value[:1] != b":" or value[-1:] != b":":
        return None
    try:
        digest = base64.b64decode(value[1:-1], validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == 32 else None


def acceptsCoding(acceptEncoding: bytes | None, coding: bytes) -> bool:
    """
    Whether C{Accept-Encoding} lists C{coding} by name with a q above 0 (a
    C{*} does not stand for a dictionary coding: it needs a dictionary the
    client names).
    """
    if acceptEncoding is None:
        return False
    for element in acceptEncoding.split(b","):
        name, _, params = element.partition(b";")
        if name.strip().lower() != coding:
            continue
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        return q > 0
    return False


def matchPattern(path: bytes, configured: str | None = None) -> str | None:
    """
    The C{match} a version of C{path} is offered with: C{configured} (a
    host's pattern) if given, else the request's path without its query,
    URLPattern characters escaped (a pattern given as a path also matches
    every query of that path).

    @return: the pattern, or L{None} for a path that cannot be one (not
        printable ASCII).
    """
    if configured is not None:
        return configured
    path = path.split(b"?", 1)[0].split(b"#", 1)[0]
    if not path.startswith(b"/") or not _PRINTABLE.match(path):
        return None
    return _PATTERN_SPECIAL.sub(r"\\\1", path.decode("ascii"))


def useAsDictionary(match: str) -> bytes:
    """
    The C{Use-As-Dictionary} value offering a response for C{match}.
    """
    return b'match="' + _SF_ESCAPE.sub(r"\\\1", match).encode("ascii") + b'"'


def _directives(headers: HeaderList) -> dict[bytes, bytes | None]:
    directives: dict[bytes, bytes | None] = {}
    for name, value in headers:
        if name.lower() != b"cache-control":
            continue
        for part in value.split(b","):
            key, eq, argument = part.partition(b"=")
            key = key.strip().lower()
            if key and key not in directives:
                directives[key] = argument.strip().strip(b'"') if eq else None
    return directives


def _seconds(value: bytes | None) -> float | None:
    if value is None or not value.isdigit():
        return None
    return float(value)


def _date(value: bytes | None) -> float | None:
    if value is None:
        return None
    parsed = parsedate_tz(value.decode("latin-1"))
    if parsed is None:
        return None
    return float(calendar.timegm(parsed[:9])) - (parsed[9] or 0)


def _first(headers: HeaderList, wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return None


def dictionaryLifetime(status: int, headers: HeaderList, now: float) -> float:
    """
    How long Chromium keeps a response as a dictionary: its freshness
    lifetime plus its C{stale-while-revalidate}, less its C{Age}, as
    Chromium's C{HttpResponseHeaders::GetFreshnessLifetimes} computes them.
    Chromium stores no dictionary whose lifetime is not positive: a
    response with C{no-cache} or C{no-store}, or C{max-age=0} without
    C{stale-while-revalidate}, is never one (verified with Chromium 156,
    see docs/http.md).

    @param now: the time the response is sent (POSIX seconds).
    @return: seconds, 0 when none.
    """
    cc = _directives(headers)
    if b"no-cache" in cc or b"no-store" in cc:
        return 0.0
    staleness = 0.0
    if b"must-revalidate" not in cc:
        staleness = _seconds(cc.get(b"stale-while-revalidate")) or 0.0
    date = _date(_first(headers, b"date")) or now
    freshness = 0.0
    maxAge = _seconds(cc.get(b"max-age")) if b"max-age" in cc else None
    expires = _first(headers, b"expires")
    if maxAge is not None:
        freshness = maxAge
    elif expires is not None:
        when = _date(expires)
        freshness = max(0.0, when - date) if when is not None else 0.0
    elif status in (200, 203, 206):
        # Heuristic freshness (RFC 9111 4.2.2), as Chromium takes it: a
        # tenth of the time since Last-Modified.
        modified = _date(_first(headers, b"last-modified"))
        if modified is not None and modified < date:
            freshness = (date - modified) / 10
    age = _seconds(_first(headers, b"age")) or 0.0
    return max(0.0, freshness + staleness - age)


def isShareable(requestHeaders: Iterable[bytes], responseHeaders: HeaderList) -> bool:
    """
    The edge's own conservative check of whether a response may be offered
    as a dictionary (and so kept for other requests): not one answering a
    request with credentials (C{Authorization}, C{Cookie}), not one setting
    a cookie or marked C{private} or C{no-store}.

    To be replaced by C{railgun.http.privacy} (issue 11, item 3) once it
    lands.

    @param requestHeaders: the request's header names, lower-case.
    """
    for name in requestHeaders:
        if name in (b"authorization", b"cookie"):
            return False
    for name, _ in responseHeaders:
        if name.lower() == b"set-cookie":
            return False
    cc = _directives(responseHeaders)
    return b"private" not in cc and b"no-store" not in cc


def encodeDcz(
    body: bytes, dictionary: bytes, level: int = DCZ_LEVEL, hashed: bytes = b""
) -> bytes:
    """
    C{body} in the C{dcz} content coding with C{dictionary}: the magic
    header, the dictionary's SHA-256, and a zstd frame with the dictionary
    as its raw-content prefix (no dictionary id, the content size given).

    @param hashed: the dictionary's SHA-256, when already known.
    """
    codec = _CODEC if level == DCZ_LEVEL else ZstdPatchCodec(level, cacheBytes=0)
    frame = codec.encode(dictionary, body)
    return DCZ_MAGIC + (hashed or sha256(dictionary)) + frame


def decodeDcz(encoded: bytes, dictionary: bytes, maxSize: int = 1 << 26) -> bytes:
    """
    Undo L{encodeDcz} (for tests and benchmarks: browsers do it).

    @raise ValueError: for a wrong header, dictionary hash, or frame.
    """
    if encoded[:8] != DCZ_MAGIC:
        raise ValueError("not a dcz body")
    if encoded[8:40] != sha256(dictionary):
        raise ValueError("dcz body for another dictionary")
    dctx = zstandard.ZstdDecompressor(
        dict_data=zstandard.ZstdCompressionDict(
            dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT
        ),
        max_window_size=1 << 27,
    )
    try:
        return dctx.decompress(encoded[40:], max_output_size=maxSize)
    except zstandard.ZstdError as e:
        raise ValueError(f"bad dcz frame: {e}") from e


def addVary(headers: Any, *names: bytes) -> None:
    """
    Add the C{names} a twisted.web response C{headers} does not already
    vary on.
    """
    vary = headers.getRawHeaders(b"vary", [])
    listed = {token.strip().lower() for value in vary for token in value.split(b",")}
    if b"*" in listed:
        return
    for name in names:
        if name.lower() not in listed:
            headers.addRawHeader(b"vary", name)


@define
class Dictionaries:
    """
    The edge's dictionary transport: which versions are offered, the offered
    versions kept in the edge's version store by SHA-256 (so bounded in bytes
    and time with it), and their C{dcz} encodings.

    @ivar store: the edge's version store.
    @ivar clock: for the responses' lifetimes.
    @ivar patterns: Host -> the C{match} pattern its versions are offered
        with, instead of each one's own path; L{None} for none.
    @ivar encodings: recent C{dcz} bodies, by version digest and dictionary.
    @ivar encode: encodes C{(body, dictionary, hash)} off the reactor thread
        when large; L{None} encodes inline.
    """

    store: IVersionStore
    clock: IReactorTime
    patterns: HostMap[str] | None = None
    encodings: ClientEncodings | None = None
    encode: Callable[[bytes, bytes, bytes], Deferred[bytes]] | None = None

    def prepare(
        self,
        request: Any,
        host: str,
        path: bytes,
        status: int,
        headers: HeaderList,
        body: bytes,
        digest: bytes,
        coding: bytes | None,
    ) -> Deferred[bytes | None]:
        """
        For a version about to be served to C{request} (its response headers
        already set from C{headers}): offer it as a dictionary where
        Chromium would keep it (adding C{Use-As-Dictionary} and C{Vary}),
        keep it by SHA-256, and encode it as C{dcz} when the request names
        a dictionary the edge holds.

        @param coding: the plain coding the body would be served in, L{None}
            when it must not be recoded (identity, C{no-transform}, not text).
        @return: a L{Deferred} firing with the C{dcz} body, or L{None}.
        """
        requestHeaders = request.requestHeaders
        responseHeaders = request.responseHeaders
        names = [name.lower() for name, _ in requestHeaders.getAllRawHeaders()]
        if (
            coding is None
            or status != 200
            or request.method != b"GET"
            or not isShareable(names, headers)
        ):
            return succeed(None)
        offered = False
        if dictionaryLifetime(status, headers, self.clock.seconds()) > 0:
            if responseHeaders.hasHeader(USE_AS_DICTIONARY):
                offered = True  # the site offers it itself
            else:
                pattern = matchPattern(
                    path, self.patterns.lookup(host) if self.patterns else None
                )
                if pattern is not None:
                    responseHeaders.setRawHeaders(
                        USE_AS_DICTIONARY, [useAsDictionary(pattern)]
                    )
                    offered = True
            if offered:
                self.store.set(storeKey(host, sha256(body)), body)
        wanted = parseAvailableDictionary(
            requestHeaders.getRawHeaders(b"available-dictionary")
        )
        if (
            wanted is None
            or requestHeaders.hasHeader(b"range")
            or not acceptsCoding(
                requestHeaders.getRawHeaders(b"accept-encoding", [None])[0], DCZ
            )
        ):
            if offered:
                addVary(responseHeaders, b"Accept-Encoding", b"Available-Dictionary")
            return succeed(None)
        addVary(responseHeaders, b"Accept-Encoding", b"Available-Dictionary")
        log.info(
            "{host}: Available-Dictionary {hash} received",
            host=host,
            hash=wanted.hex(),
        )
        kept = self.encodings
        cacheName = DCZ + b" " + storeKey(host, wanted)
        if kept is not None:
            cached = kept.get(digest, cacheName)
            if cached is not None:
                return succeed(cached)
        d = self.store.get(storeKey(host, wanted))

        def gotDictionary(dictionary: bytes | None) -> Any:
            if dictionary is None or sha256(dictionary) != wanted:
                log.info(
                    "{host}: dictionary {hash} not held", host=host, hash=wanted.hex()
                )
                return None  # unknown or expired: the normal response
            if self.encode is None:
                return encodeDcz(body, dictionary, hashed=wanted)
            return self.encode(body, dictionary, wanted)

        def encoded(dcz: bytes | None) -> bytes | None:
            if dcz is not None and kept is not None:
                kept.put(digest, cacheName, dcz)
            return dcz

        def failed(failure: Failure) -> None:
            # The plain coding goes instead: dcz is only ever a saving.
            log.failure("encoding dcz for {host}", failure, host=host)

        d.addCallback(gotDictionary)
        d.addCallback(encoded)
        d.addErrback(failed)
        return d


__all__ = [
    "DCZ",
    "DCZ_MAGIC",
    "Dictionaries",
    "acceptsCoding",
    "decodeDcz",
    "dictionaryLifetime",
    "encodeDcz",
    "isShareable",
    "matchPattern",
    "parseAvailableDictionary",
    "sha256",
    "storeKey",
    "useAsDictionary",
]

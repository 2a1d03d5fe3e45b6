"""
HTTP content handling around versions: which responses are worth keeping
and sending as deltas, undoing a Content-Encoding the origin server applied
anyway (versions are kept in identity encoding), and choosing and applying a
content coding for the edge's client.

Bodies here come from origin servers and clients we do not control, so every
decoder produces at most C{maxSize} bytes, decompressing incrementally: a
compression bomb is stopped as soon as it crosses the limit.
"""

from __future__ import annotations

import gzip
import io
import zlib

import brotli
import zstandard
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool

from railgun.delta.codec import offReactorAbove

CHUNK = 64 * 1024
"""
Most input handed to a decompressor at once; with the per-call output caps
below, this bounds the memory a decode step can take.
"""

MAX_STACKED_CODINGS = 4
"""
More content codings than this in one header is refused: nobody stacks that
many, and each one costs a full pass.
"""

ZSTD_MAX_WINDOW = 8 * 1024 * 1024
"""
Largest zstd window accepted from an origin server: RFC 9659 lets HTTP
recipients refuse windows over 8 MB, which bounds a decoder's memory.
"""

GZIP_LEVEL = 6
BROTLI_QUALITY = 5
ZSTD_LEVEL = 3
"""
Levels used towards clients, chosen for speed on the corpus: see
C{docs/benchmarks.md}, section "Codec".
"""

_TEXT_SUBTYPES = frozenset(
    {
        "json",
        "javascript",
        "x-javascript",
        "ecmascript",
        "x-ecmascript",
        "xml",
        "dart",
        "yaml",
        "x-yaml",
        "toml",
        "graphql",
        "xhtml",
        "x-httpd-php",
        "rtf",
    }
)

_NOT_DOCUMENTS = frozenset({"text/event-stream"})
"""
Text types that are never one whole document: server-sent events stream
forever and must not be buffered.
"""


class ContentDecodingError(Exception):
    """
    A body could not be decoded: unknown or too many codings, corrupt or
    truncated data, or a result over the allowed size.
    """


def _mediaType(contentType: bytes) -> str:
    """
    The lower-cased C{type/subtype} of a Content-Type value, parameters
    dropped.
    """
    return contentType.split(b";", 1)[0].strip().decode("latin-1").lower()


def isTextLike(contentType: bytes | None) -> bool:
    """
    Whether a Content-Type names text that changes a little between
    versions: C{text/*} and the text formats sent under other top-level
    types (JSON, JavaScript, XML, SVG, ...).

    @param contentType: the header value, or C{None} when absent.
    @return: C{True} for text-like types; C{False} for absent or binary ones.
    """
    if contentType is None:
        return False
    media = _mediaType(contentType)
    kind, slash, subtype = media.partition("/")
    if not slash or not kind or not subtype or media in _NOT_DOCUMENTS:
        return False
    if kind == "text":
        return True
    if subtype.endswith(("+json", "+xml")):
        return True
    return kind == "application" and subtype in _TEXT_SUBTYPES


def isDeltaEligible(
    method: bytes,
    status: int,
    contentType: bytes | None,
    length: int | None,
    maxSize: int,
) -> bool:
    """
    Whether a response is worth keeping as a version and sending as a delta.

    Only C{GET 200} responses are versions of a URL; only text-like bodies
    change by small edits; bodies over C{maxSize} are streamed through (the
    original's C{stream.size}).

    @param method: the request method.
    @param status: the response status code.
    @param contentType: the response's Content-Type value, or C{None}.
    @param length: the Content-Length, or C{None} when unknown (chunked).
    @param maxSize: the largest body kept as a version.
    @return: C{True} when the body should go through the delta path.
    """
    if method != b"GET" or status != 200:
        return False
    if length is not None and not 0 <= length <= maxSize:
        return False
    return isTextLike(contentType)


def _parseCodings(codings: bytes) -> list[str]:
    """
    The content codings of a Content-Encoding value, in the order applied.
    """
    names = []
    for item in codings.split(b","):
        name = item.strip().decode("latin-1").lower()
        if name:
            names.append(name)
    return names


def _inflate(data: bytes, wbits: int, maxSize: int, members: bool) -> bytes:
    """
    Inflate C{data}, at most C{maxSize} bytes out, refusing truncation and
    trailing garbage; with C{members}, several gzip members in a row.
    """
    out = bytearray()
    rest = data
    while True:
        d = zlib.decompressobj(wbits)
        pending = rest
        while pending:
            chunk = d.decompress(pending, maxSize - len(out) + 1)
            out += chunk
            if len(out) > maxSize:
                raise ContentDecodingError(f"body inflates over {maxSize} bytes")
            pending = d.unconsumed_tail
            if d.eof:
                break
        if not d.eof:
            # Flush whatever zlib still holds, to tell a cut stream apart.
            out += d.flush(maxSize - len(out) + 1)
            if len(out) > maxSize:
                raise ContentDecodingError(f"body inflates over {maxSize} bytes")
            raise ContentDecodingError("truncated deflate data")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if not members:
            raise ContentDecodingError("trailing data after deflate stream")


def _gunzip(data: bytes, maxSize: int) -> bytes:
    if not data.startswith(b"\x1f\x8b"):
        raise ContentDecodingError("not gzip data")
    return _inflate(data, 31, maxSize, members=True)


def _looksLikeZlib(data: bytes) -> bool:
    """
    Whether C{data} starts with a zlib header (RFC 1950): deflate method and
    a check value; servers often send raw deflate under "deflate" instead.
    """
    return (
        len(data) >= 2
        and data[0] & 0x0F == 8
        and data[0] >> 4 <= 7
        and (data[0] << 8 | data[1]) % 31 == 0
    )


def _inflateHttp(data: bytes, maxSize: int) -> bytes:
    if _looksLikeZlib(data):
        return _inflate(data, 15, maxSize, members=False)
    return _inflate(data, -15, maxSize, members=False)


def _unbrotli(data: bytes, maxSize: int) -> bytes:
    d = brotli.Decompressor()
    out = bytearray()
    view = memoryview(data)
    pos = 0
    while True:
        if d.can_accept_more_data():
            piece = bytes(view[pos : pos + CHUNK])
            pos += len(piece)
        else:
            piece = b""
        chunk = d.process(piece, output_buffer_limit=min(CHUNK, maxSize - len(out) + 1))
        out += chunk
        if len(out) > maxSize:
            raise ContentDecodingError(f"body decompresses over {maxSize} bytes")
        if d.is_finished():
            if pos < len(data):
                raise ContentDecodingError("trailing data after brotli stream")
            return bytes(out)
        if pos >= len(data) and not chunk and d.can_accept_more_data():
            raise ContentDecodingError("truncated brotli data")


def _unzstd(data: bytes, maxSize: int) -> bytes:
    if not data:
        raise ContentDecodingError("empty zstd data")
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    # First pass, output dropped: proves the whole input decodes to at most
    # maxSize bytes, in bounded memory (a frame need not announce its size).
    total = 0
    reader = dctx.stream_reader(
        io.BytesIO(data), read_size=CHUNK, read_across_frames=True
    )
    with reader:
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > maxSize:
                raise ContentDecodingError(f"body decompresses over {maxSize} bytes")
    # Second pass, frame by frame: stream_reader stops quietly at the end of
    # input even inside a frame, a one-frame decompressobj tells us.
    out = bytearray()
    rest = data
    while rest:
        obj = dctx.decompressobj()
        out += obj.decompress(rest)
        if not obj.eof:
            raise ContentDecodingError("truncated zstd data")
        rest = obj.unused_data
    if len(out) > maxSize:
        raise ContentDecodingError(f"body decompresses over {maxSize} bytes")
    return bytes(out)


_DECODERS = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflateHttp,
    "br": _unbrotli,
    "zstd": _unzstd,
}


def decodeContentEncoding(body: bytes, codings: bytes, maxSize: int) -> bytes:
    """
    Undo the content codings of a response body, last applied first.

    @param body: the body as received.
    @param codings: the Content-Encoding value, e.g. C{b"gzip"} or
        C{b"deflate, br"} (applied in that order).
    @param maxSize: the largest result (and intermediate result) allowed.
    @return: the body in identity encoding.
    @raise ContentDecodingError: for an unknown coding, more than
        L{MAX_STACKED_CODINGS}, corrupt or truncated data, or a result over
        C{maxSize}.
    """
    names = [n for n in _parseCodings(codings) if n != "identity"]
    if len(names) > MAX_STACKED_CODINGS:
        raise ContentDecodingError(f"{len(names)} stacked content codings")
    for name in names:
        if name not in _DECODERS:
            raise ContentDecodingError(f"unsupported content coding {name!r}")
    for name in reversed(names):
        try:
            body = _DECODERS[name](body, maxSize)
        except ContentDecodingError:
            raise
        except Exception as e:
            raise ContentDecodingError(f"corrupt {name} data: {e}") from e
    if len(body) > maxSize:
        raise ContentDecodingError(f"body of {len(body)} bytes is over {maxSize}")
    return body


_PREFERENCE = (b"br", b"zstd", b"gzip")
"""
Codings the edge produces, preferred first when the client rates them equal.
"""


def _parseQ(value: str) -> float | None:
    """
    An RFC 9110 qvalue: 0 to 1 with at most three decimals; C{None} if bad.
    """
    value = value.strip()
    if not value or len(value) > 5 or value[0] not in "01":
        return None
    if len(value) > 1 and (value[1] != "." or not value[2:].isdigit() and value[2:]):
        return None
    try:
        q = float(value)
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None


def _acceptWeights(acceptEncoding: bytes) -> dict[str, float]:
    """
    Coding name -> qvalue for an Accept-Encoding value; items with a bad
    qvalue are dropped.
    """
    weights: dict[str, float] = {}
    for item in acceptEncoding.decode("latin-1").split(","):
        parts = item.split(";")
        name = parts[0].strip().lower()
        if not name:
            continue
        q: float | None = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                q = _parseQ(value)
        if q is None:
            continue
        if name == "x-gzip":
            name = "gzip"
        weights[name] = max(q, weights.get(name, 0.0)) if name in weights else q
    return weights


def chooseEncoding(acceptEncoding: bytes | None) -> bytes | None:
    """
    Pick the content coding for a client's response (RFC 9110, 12.5.3).

    The coding with the highest qvalue wins, C{br}, C{zstd}, C{gzip} in that
    order on ties; C{*} stands for any coding not listed; an explicitly
    listed C{identity} that outranks every coding wins. No header, an empty
    one, or nothing acceptable gives identity (a response must still be
    sent; identity is what RFC 9110 says to send then).

    @param acceptEncoding: the Accept-Encoding value, or C{None} if absent.
    @return: C{b"br"}, C{b"zstd"}, C{b"gzip"}, or C{None} for identity.
    """
    if acceptEncoding is None:
        return None
    weights = _acceptWeights(acceptEncoding)
    star = weights.get("*")
    best: bytes | None = None
    bestQ = 0.0
    for coding in _PREFERENCE:
        q = weights.get(coding.decode("ascii"), star if star is not None else 0.0)
        if q > bestQ:
            best, bestQ = coding, q
    identityQ = weights.get("identity")
    if best is not None and identityQ is not None and identityQ > bestQ:
        return None
    return best


def encodeBody(body: bytes, coding: bytes | None) -> bytes:
    """
    Apply a content coding chosen by L{chooseEncoding}.

    @param body: the body in identity encoding.
    @param coding: C{b"br"}, C{b"zstd"}, C{b"gzip"}, or C{None}/C{b"identity"}.
    @return: the encoded body.
    @raise ValueError: for a coding this module does not produce.
    """
    if coding is None or coding == b"identity":
        return body
    if coding == b"gzip":
        return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    if coding == b"br":
        return brotli.compress(body, mode=brotli.MODE_TEXT, quality=BROTLI_QUALITY)
    if coding == b"zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, source_size=max(1, len(body)), write_content_size=1
        )
        if params.window_log > 23:
            # RFC 9659: HTTP recipients may refuse windows over 8 MB.
            params = zstandard.ZstdCompressionParameters.from_level(
                ZSTD_LEVEL,
                source_size=max(1, len(body)),
                write_content_size=1,
                window_log=23,
            )
        return zstandard.ZstdCompressor(compression_params=params).compress(body)
    raise ValueError(f"unsupported content coding {coding!r}")


#: Bodies larger than this are compressed for clients in a thread pool: gzip
#: takes ~1.5 ms per 128 KiB here (and br ~1 ms), long enough to hold up
#: every other request on the reactor thread, while zlib, brotli and
#: zstandard all release the GIL (two threads compress a 740 KB page in
#: parallel at nearly twice the rate of one).
CLIENT_ENCODE_IN_THREAD_ABOVE = 128 * 1024


def deferEncodeBody(
    reactor: IReactorFromThreads,
    threadpool: ThreadPool,
    body: bytes,
    coding: bytes,
    threshold: int = CLIENT_ENCODE_IN_THREAD_ABOVE,
) -> Deferred[bytes]:
    """
    L{encodeBody}, in C{threadpool} when C{body} is larger than
    C{threshold}, inline (an already fired L{Deferred}) otherwise.

    @param reactor: the reactor the result is delivered in.
    @param threadpool: a started thread pool.
    @return: a L{Deferred} firing with the encoded body.
    """
    return offReactorAbove(
        reactor, threadpool, len(body), threshold, encodeBody, body, coding
    )

"""
How a versioned body crosses the link, as pure functions: the origin role
chooses between C{same}, C{delta} and C{full} (L{encodeVersion}); the edge
rebuilds the body and checks it against the announced digest
(L{decodeVersion}). No I/O here: the roles do the fetching and storing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from railgun.delta.codec import (
    ENCODE_IN_THREAD_ABOVE,
    DeltaError,
    IDeltaCodec,
    IFullCodec,
    offReactorAbove,
    releasingWhenDone,
)
from railgun.delta.digest import versionDigest

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads
    from twisted.python.threadpool import ThreadPool

    from railgun.delta.preparer import BackgroundPreparer

_T = TypeVar("_T")

log = Logger()

#: a compressed full body is used only when it saves at least this share;
#: below it, decompressing costs the edge more than the bytes save.
MIN_COMPRESSION_SAVING = 0.05

SAME = "same"
DELTA = "delta"
FULL = "full"
RAW = "raw"
IDENTITY = "identity"


class VersionMismatch(Exception):
    """
    The body rebuilt at the edge is not the version the origin role
    announced (wrong or corrupted base, corrupted payload): the edge must
    fetch the response again in full.
    """


@frozen
class EncodedVersion:
    """
    A version as it crosses the link.

    @ivar mode: C{same} (no payload: the edge's base is this version),
        C{delta} (payload = delta against the base) or C{full}.
    @ivar codec: the codec name of the payload (C{identity} when none).
    @ivar payload: the bytes sent on the link.
    @ivar digest: the digest of the identity body.
    @ivar length: the identity body's length.
    @ivar baseFound: whether the origin role had the edge's base.
    @ivar level: the level a delta was made at, when its codec has levels
        and the caller chose one (0: not known).
    """

    mode: str
    codec: str
    payload: bytes
    digest: str
    length: int
    baseFound: bool
    level: int = 0


def encodeVersion(
    body: bytes,
    *,
    baseDigest: str | None,
    baseBody: bytes | None,
    deltaCodec: IDeltaCodec | None,
    fullCodec: IFullCodec | None,
    digest: str | None = None,
    level: int = 0,
) -> EncodedVersion:
    """
    Choose the smallest correct way to send C{body}.

    @param baseDigest: the version the edge holds, if any.
    @param baseBody: that version's body if the origin role has it (already
        checked against C{baseDigest} by the caller).
    @param digest: C{versionDigest(body)} if already computed.
    @param level: the level to make a delta at, with a codec that has
        levels (C{encodeLeveled}, which may fall back to its fixed level:
        the result says which); 0 lets the codec choose.
    """
    if digest is None:
        digest = versionDigest(body)
    length = len(body)
    if baseDigest is not None and baseDigest == digest:
        return EncodedVersion(SAME, IDENTITY, b"", digest, length, True)
    codec, payload = IDENTITY, body
    if fullCodec is not None and length:
        compressed = fullCodec.compress(body)
        if len(compressed) <= length * (1 - MIN_COMPRESSION_SAVING):
            codec, payload = fullCodec.name, compressed
    if baseBody is not None and deltaCodec is not None:
        encodeLeveled = getattr(deltaCodec, "encodeLeveled", None)
        if level and baseBody and encodeLeveled is not None:
            level, delta = encodeLeveled(baseBody, body, level)
        else:
            delta = deltaCodec.encode(baseBody, body)
        if len(delta) < len(payload):
            return EncodedVersion(
                DELTA, deltaCodec.name, delta, digest, length, True, level
            )
    return EncodedVersion(FULL, codec, payload, digest, length, baseBody is not None)


def decodeVersion(
    mode: str,
    codec: IDeltaCodec | IFullCodec | None,
    payload: bytes,
    *,
    digest: str,
    base: tuple[str, bytes] | None,
    maxSize: int,
) -> bytes:
    """
    Rebuild a body at the edge and check it.

    @param codec: the codec named by the response (L{None} for identity).
    @param base: the edge's cached (digest, body) it named as its base.
    @raise VersionMismatch: when the result is not the announced version,
        or the base it needs is missing.
    @raise DeltaError: when the payload does not decode.
    """
    if mode == SAME:
        if base is None or base[0] != digest:
            raise VersionMismatch(
                "origin role answered 'same' for a base the edge does not hold"
            )
        return base[1]
    if mode == DELTA:
        if base is None or not IDeltaCodec.providedBy(codec):
            raise VersionMismatch("a delta needs the edge's base and a delta codec")
        body = codec.decode(base[1], payload, maxSize)
    elif mode == FULL:
        if codec is None:
            body = payload
        elif IFullCodec.providedBy(codec):
            body = codec.decompress(payload, maxSize)
        else:
            raise DeltaError("a full body needs a whole-body codec")
    else:
        raise DeltaError(f"unknown body mode {mode!r}")
    if len(body) > maxSize:
        raise DeltaError("rebuilt body larger than allowed")
    if versionDigest(body) != digest:
        raise VersionMismatch("rebuilt body does not match the announced digest")
    return body


def deferEncodeVersion(
    reactor: IReactorFromThreads,
    threadpool: ThreadPool,
    body: bytes,
    threshold: int = ENCODE_IN_THREAD_ABOVE,
    preparer: BackgroundPreparer | None = None,
    **kwargs: Any,
) -> Deferred[EncodedVersion]:
    """
    L{encodeVersion} in C{threadpool} when it is heavy (a body over
    C{threshold} bytes, or a delta made at the codec's best level), inline
    otherwise. Call on the reactor thread: the level of a delta is chosen
    here (C{levelFor}), and a best-level encode is counted as running
    (C{reserveBest}) until it is done, so that encodes arriving together
    do not all take the slow level.

    Then, when the delta codec asks for it (C{shouldPrepare}), C{body} is
    handed to C{preparer} to be hashed as the base the next version of the
    page will be encoded against, off every request's path.

    @param preparer: prepares bases in the background; L{None}: none are.
    @param kwargs: as for L{encodeVersion}.
    @return: a L{Deferred} firing with the encoded version.
    """
    codec = kwargs.get("deltaCodec")
    baseBody = kwargs.get("baseBody")
    heavy = len(body)
    release = None
    levelFor = getattr(codec, "levelFor", None)
    if codec is not None and baseBody and levelFor is not None:
        level = levelFor(baseBody, len(body))
        kwargs["level"] = level
        if level == codec.bestLevel and level != codec.levelFor(b"", len(body)):
            heavy = threshold + 1
            release = codec.reserveBest()
    d = offReactorAbove(
        reactor, threadpool, heavy, threshold, lambda: encodeVersion(body, **kwargs)
    )
    if release is not None:
        releasingWhenDone(d, release)
    if (
        preparer is not None
        and codec is not None
        and getattr(codec, "shouldPrepare", None) is not None
    ):
        # Once the delta is made: the two would compete for the CPU (and
        # its caches) while the request waits.
        d.addBoth(_preparing, preparer, codec, body)
    return d


def _preparing(result: _T, preparer: BackgroundPreparer, codec: Any, body: bytes) -> _T:
    if codec.shouldPrepare(body):
        preparer.submit(codec.prepare, body)
    return result

"""
The C{Railgun} diagnostic response header, modelled on the original's
C{CF-Railgun}: C{<id> <ratio> <origin-seconds> <flags-hex> <version>}, for
example C{4fd1682b12 0.06 0.050570 0031 5360}, or C{direct (<reason>)} when a
response did not cross a link.

The ratio and the flags about a base say how similar a page is to a version
another request left; on a response of one user's, or to a request with
credentials, they would make the header a compression oracle (see
L{railgun.http.privacy}), so L{discloses} decides, by the edge's
C{--diagnostic-header} mode, whether they are written or hidden (the ratio
written as C{-}, the flags reduced to L{PUBLIC_FLAGS}).
"""

from __future__ import annotations

import math
import re
from enum import IntFlag

from attrs import frozen

DIAGNOSTIC_HEADER = b"railgun"
"""
The name of the diagnostic response header (lowercase, as in header lists).
"""


class Flag(IntFlag):
    """
    The flag bits of the diagnostic header, written as four hex digits.

    Bits 0x01 (map file changed the origin IP), 0x02 (map default IP used)
    and 0x04 (host name changed) belonged to the original's map file, and
    0x40 to its report of a restarted origin connection (treq's pool
    retries those by itself, unseen); they are left unused so that the bits
    below keep the original's values.
    """

    LINK_REUSED = 0x08
    """An existing link connection carried the request (no new handshake)."""

    BASE_SENT = 0x10
    """The edge named a base version it holds for this URL."""

    BASE_FOUND = 0x20
    """The origin role had that base version, so a delta was possible."""

    RETRIED = 0x80
    """The request was retried on another link after the first one failed."""

    DELTA = 0x100
    """The body crossed the link as a delta against the base."""

    SAME = 0x200
    """The body was identical to the base: no body crossed the link."""

    COMPRESSED = 0x400
    """The body crossed the link compressed (not as a delta)."""


_MAX_FLAGS = 0xFFFF

PUBLIC_FLAGS = Flag.LINK_REUSED | Flag.RETRIED
"""
The flags written when the ratio is hidden: those about the link, none
about a base or how the body crossed.
"""

#: the C{--diagnostic-header} modes: no header on relayed responses; the
#: ratio only where it discloses nothing about another user's page (the
#: default); the ratio on every response (for a deployment whose clients are
#: all trusted, such as a test bench).
DIAGNOSTIC_MODES = ("off", "public", "full")

#: the ratio field of a diagnostic whose ratio is hidden.
HIDDEN_RATIO = b"-"


def discloses(mode: str, shareable: bool, credentials: bool) -> bool:
    """
    Whether a response's diagnostic may show its ratio and base flags.

    @param mode: one of L{DIAGNOSTIC_MODES} (C{"off"} writes no header at
        all: the question does not arise, the answer is C{False}).
    @param shareable: whether the exchange may be shared across users
        (L{railgun.http.privacy.exchangeShareable}).
    @param credentials: whether the request carried credentials
        (L{railgun.http.privacy.carriesCredentials}).
    """
    if mode == "full":
        return True
    return mode == "public" and shareable and not credentials


# What a request id or version may contain: visible ASCII, so the fields
# stay space-separated and the whole is a valid header value.
_WORD = re.compile(r"[\x21-\x7e]+\Z")

_FORMAT = re.compile(
    rb"(?P<id>[\x21-\x7e]+) (?P<ratio>[0-9]+\.[0-9]{2}|-) "
    rb"(?P<seconds>[0-9]+\.[0-9]{6}) (?P<flags>[0-9a-fA-F]{4}) "
    rb"(?P<version>[\x21-\x7e]+)\Z"
)

_REASON = re.compile(r"[\x20-\x7e]*\Z")


def _checkNumber(name: str, value: object) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


@frozen
class RailgunDiagnostic:
    """
    The fields of a C{Railgun} diagnostic header.

    @ivar requestId: the link request id (visible ASCII, no spaces).
    @ivar ratio: the percentage of the served body bytes that crossed the
        link (see L{linkRatio}); written with 2 decimals; L{None} when it is
        hidden, written C{-}.
    @ivar originSeconds: how long the origin server took, in seconds; written
        with 6 decimals.
    @ivar flags: what happened, as L{Flag} bits; written as 4 hex digits.
    @ivar version: the software version (visible ASCII, no spaces).
    """

    requestId: str
    ratio: float | None
    originSeconds: float
    flags: Flag
    version: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.requestId, str) or not _WORD.match(self.requestId):
            raise ValueError(f"invalid request id {self.requestId!r}")
        if not isinstance(self.version, str) or not _WORD.match(self.version):
            raise ValueError(f"invalid version {self.version!r}")
        if self.ratio is not None:
            _checkNumber("ratio", self.ratio)
        _checkNumber("originSeconds", self.originSeconds)
        if not isinstance(self.flags, int) or not 0 <= self.flags <= _MAX_FLAGS:
            raise ValueError(f"flags {self.flags!r} do not fit in 4 hex digits")

    def format(self) -> bytes:
        """
        Write the header value.

        @return: C{<id> <ratio> <origin-seconds> <flags-hex> <version>}.
        """
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        text = (
            f"{self.requestId} {ratio} {self.originSeconds:.6f} "
            f"{int(self.flags):04x} {self.version}"
        )
        return text.encode("ascii")

    @classmethod
    def parse(cls, value: bytes) -> RailgunDiagnostic:
        """
        Read a header value written by L{format}.

        Flag bits this version does not know are kept.

        @param value: the header value.
        @return: the diagnostic; C{ratio} and C{originSeconds} have the
            precision they were written with (C{ratio} is L{None} when
            hidden).
        @raise ValueError: if C{value} is not in that format (for example a
            C{direct (...)} value).
        """
        match = _FORMAT.match(value)
        if match is None:
            raise ValueError(f"not a Railgun diagnostic: {value[:200]!r}")
        ratio = match.group("ratio")
        return cls(
            requestId=match.group("id").decode("ascii"),
            ratio=None if ratio == HIDDEN_RATIO else float(ratio),
            originSeconds=float(match.group("seconds")),
            flags=Flag(int(match.group("flags"), 16)),
            version=match.group("version").decode("ascii"),
        )


_NUMBER_TYPES = (int, float)


def formatDiagnostic(
    requestId: str, ratio: float, originSeconds: float, flags: int, version: str
) -> bytes:
    """
    Write a diagnostic header value from its fields: what
    C{RailgunDiagnostic(...).format()} writes, and the same C{ValueError}
    for a bad field, without building the object (the edge writes one per
    response).

    @return: C{<id> <ratio> <origin-seconds> <flags-hex> <version>}.
    @raise ValueError: for a field L{RailgunDiagnostic} refuses.
    """
    if (
        ratio.__class__ in _NUMBER_TYPES
        and 0 <= ratio < math.inf
        and originSeconds.__class__ in _NUMBER_TYPES
        and 0 <= originSeconds < math.inf
        and flags.__class__ is int
        and 0 <= flags <= _MAX_FLAGS
        and requestId.__class__ is str
        and _WORD.match(requestId)
        and version.__class__ is str
        and _WORD.match(version)
    ):
        return b"%s %.2f %.6f %04x %s" % (
            requestId.encode("ascii"),
            ratio,
            originSeconds,
            flags,
            version.encode("ascii"),
        )
    # Something is wrong (or unusual, such as a Flag): the full checks say what.
    return RailgunDiagnostic(requestId, ratio, originSeconds, flags, version).format()  # type: ignore[arg-type]


def formatHidden(
    requestId: str, originSeconds: float, flags: int, version: str
) -> bytes:
    """
    Write a diagnostic header value whose ratio is hidden: the ratio as
    C{-}, only the L{PUBLIC_FLAGS} of C{flags}.

    @return: C{<id> - <origin-seconds> <flags-hex> <version>}.
    @raise ValueError: for a field L{RailgunDiagnostic} refuses.
    """
    return RailgunDiagnostic(
        requestId, None, originSeconds, Flag(flags & PUBLIC_FLAGS), version
    ).format()


def formatDirect(reason: str) -> bytes:
    """
    Write the diagnostic for a response fetched without a link.

    @param reason: why, for example C{"all links are busy"}.
    @return: C{direct (<reason>)}.
    @raise ValueError: if C{reason} is not printable ASCII.
    """
    if not _REASON.match(reason):
        raise ValueError(f"invalid direct reason {reason!r}")
    return b"direct (" + reason.encode("ascii") + b")"


def linkRatio(linkBodyBytes: int, servedBodyBytes: int) -> float:
    """
    The percentage of the served body bytes that crossed the link.

    @param linkBodyBytes: body bytes received over the link (delta,
        compressed or raw).
    @param servedBodyBytes: body bytes of the identity body served.
    @return: C{100 * linkBodyBytes / servedBodyBytes}, or C{0.0} when nothing
        was served.  It exceeds 100 when the link carried more than was
        served.
    @raise ValueError: for a negative count.
    """
    if linkBodyBytes < 0 or servedBodyBytes < 0:
        raise ValueError("byte counts must not be negative")
    if servedBodyBytes == 0:
        return 0.0
    return 100.0 * linkBodyBytes / servedBodyBytes

"""
Names of versions: a 128-bit digest of a body in identity encoding.

Both ends name the version a delta is based on, and the edge checks the body
it rebuilt against the digest the origin role announced, so a delta applied to
the wrong base can never reach a client.
"""

from __future__ import annotations

import re
from hashlib import blake2b

DIGEST_HEX_LENGTH = 32
"""
Length of a digest in hex characters (128 bits).
"""

DIGEST_RE = re.compile(rb"\A[0-9a-f]{32}\Z")
"""
Matches a well-formed digest received from a peer, as bytes: exactly 32
lower-case hex characters, nothing else (no trailing newline).
"""


def versionDigest(body: bytes) -> str:
    """
    Name a version by its content.

    BLAKE2b (in C, faster than SHA-256 and collision resistant) cut to 16
    bytes: enough to make an accidental or forged match with a stored base
    infeasible, short enough to carry on every request.

    @param body: the body, in identity encoding.
    @return: 32 lower-case hex characters.
    """
    return blake2b(body, digest_size=16).hexdigest()


def isValidDigest(value: bytes | str) -> bool:
    """
    Check that a digest received from a peer is well formed.

    @param value: the digest as received (bytes from the wire, or text).
    @return: C{True} when it is exactly 32 lower-case hex characters.
    """
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            return False
    return DIGEST_RE.match(value) is not None

"""
Request ids, generated as the original Railgun did: a running SHA-1 over a
per-process random seed and a counter.  Cheap (one small hash update per
id), unpredictable to outsiders, and unique in practice.
"""

from __future__ import annotations

import hashlib
import os

ID_LENGTH = 20


class RequestIdGenerator:
    """
    Produce request ids: 20 hex digits of a running SHA-1 digest.

    The first 10 digits are enough for display (as in the C{CF-Railgun}
    header); 20 (80 bits) keep ids unique across every process of a
    deployment.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        """
        @param seed: the secret seed; 20 random bytes from C{os.urandom} when
            omitted.
        """
        if seed is None:
            seed = os.urandom(20)
        self._hash = hashlib.sha1(seed, usedforsecurity=False)
        self._counter = 0

    def next(self) -> str:
        """
        @return: a new id of L{ID_LENGTH} lowercase hex digits.
        """
        self._counter += 1
        self._hash.update(self._counter.to_bytes(8, "big"))
        return self._hash.hexdigest()[:ID_LENGTH]

"""
The memcached store's format: the memcached keys a store key and a chunk are
stored under, the chunk head of a value split into chunks, the item flags,
and the server descriptions.  Pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import re
import struct
from hashlib import blake2b

from attrs import frozen

#: memcached's limit on the length of a key.
MAX_KEY_LENGTH = 250

#: Default size of one chunk: memcached's default item limit is 1 MiB for
#: the value, the key (up to 250 bytes) and the item header together, so a
#: chunk stays comfortably below it.
DEFAULT_CHUNK_SIZE = 1_000_000 - 1024

#: Most chunks a value may be split into, to bound work for bad headers.
MAX_CHUNKS = 4096

#: How many chunk keys go in one C{get} line.

#: memcached item flags, to tell our three kinds of items apart (and from
#: anything else found under our prefix).  "RG" in the high half.
FLAG_PLAIN = 0x52470000
FLAG_HEAD = 0x52470001
FLAG_CHUNK = 0x52470002

#: What a memcached key may be made of: printable ASCII other than space.
SAFE_KEY = re.compile(rb"[\x21-\x7e]*")


def memcachedKey(prefix: bytes, key: bytes) -> bytes:
    """
    Map a store key to the memcached key it is stored under.

    Keys that are short enough and made only of printable ASCII other than
    space are kept readable (C{prefix + b"k:" + key}); any other key is
    replaced by its 256-bit BLAKE2b digest (C{prefix + b"h:" + hex}).  The
    two forms cannot collide.

    @param prefix: the store's key prefix, itself safe.
    @param key: any bytes.
    @return: a key of at most L{MAX_KEY_LENGTH} safe bytes.
    """
    if len(prefix) + 2 + len(key) <= MAX_KEY_LENGTH and SAFE_KEY.fullmatch(key):
        return prefix + b"k:" + key
    return prefix + b"h:" + blake2b(key, digest_size=32).hexdigest().encode("ascii")


def chunkKey(prefix: bytes, headKey: bytes, nonce: bytes, index: int) -> bytes:
    """
    Name the memcached key of one chunk of a chunked value.

    The name depends on the head's key and on the random nonce of the write,
    so two writes of one key never share chunks.

    @param prefix: the store's key prefix.
    @param headKey: the memcached key of the value's head.
    @param nonce: the nonce from the value's L{ChunkHead}.
    @param index: the chunk's position, from 0.
    @return: a safe memcached key.
    """
    h = blake2b(digest_size=20)
    h.update(headKey)
    h.update(b"\0")
    h.update(nonce)
    h.update(index.to_bytes(4, "big"))
    return prefix + b"c:" + h.hexdigest().encode("ascii")


def valueChecksum(value: bytes) -> bytes:
    """
    Checksum a whole value, so that a chunked value with a missing, stale or
    damaged chunk is detected.

    @param value: the value.
    @return: its 128-bit BLAKE2b digest.
    """
    return blake2b(value, digest_size=16).digest()


@frozen
class ChunkHead:
    """
    The item stored under a value's key when the value is split into chunks.

    The chunks are stored first, each under L{chunkKey}, and the head last.
    A reader that finds a head fetches the chunks it names; any chunk
    missing, of the wrong length, or a whole whose checksum differs, makes
    the value a miss.

    Encoded as 49 bytes: magic C{b"RGCH"}, format version (1 byte), total
    length (8 bytes), chunk size (4 bytes), checksum (16 bytes), nonce (16
    bytes), integers big-endian.

    @ivar total: length of the whole value.
    @ivar chunkSize: length of every chunk but the last.
    @ivar checksum: L{valueChecksum} of the whole value.
    @ivar nonce: 16 random bytes chosen for this write.
    """

    total: int
    chunkSize: int
    checksum: bytes
    nonce: bytes

    _format = struct.Struct(">4sBQI16s16s")
    MAGIC = b"RGCH"
    VERSION = 1
    SIZE = _format.size

    @property
    def count(self) -> int:
        """
        @return: how many chunks the value is split into.
        """
        return -(-self.total // self.chunkSize)

    def chunkLength(self, index: int) -> int:
        """
        @param index: a chunk's position, from 0.
        @return: the length that chunk must have.
        """
        return min(self.chunkSize, self.total - index * self.chunkSize)

    def encode(self) -> bytes:
        """
        @return: the head as stored in memcached.
        """
        return self._format.pack(
            self.MAGIC,
            self.VERSION,
            self.total,
            self.chunkSize,
            self.checksum,
            self.nonce,
        )

    @classmethod
    def parse(cls, data: bytes) -> ChunkHead:
        """
        Decode and check a head.

        @param data: the head as stored in memcached.
        @return: the head.
        @raise ValueError: if C{data} is not a valid head.
        """
        if len(data) != cls.SIZE:
            raise ValueError(f"chunk head has {len(data)} bytes, not {cls.SIZE}")
        magic, version, total, chunkSize, checksum, nonce = cls._format.unpack(data)
        if magic != cls.MAGIC or version != cls.VERSION:
            raise ValueError("not a chunk head of a known version")
        if total < 1 or chunkSize < 1:
            raise ValueError("chunk head with an empty value or chunk")
        head = cls(total, chunkSize, checksum, nonce)
        if head.count > MAX_CHUNKS:
            raise ValueError(f"chunk head names {head.count} chunks")
        return head


def parseServer(description: str) -> tuple[str, int] | str:
    """
    Read the address of one memcached server.

    @param description: C{"host:port"}, C{"[ipv6]:port"}, or
        C{"unix:/path/to/socket"}.
    @return: C{(host, port)}, or the socket path.
    @raise ValueError: if C{description} has none of these forms.
    """
    if description.startswith("unix:"):
        path = description[len("unix:") :]
        if not path:
            raise ValueError(f"memcached server {description!r}: empty socket path")
        return path
    host, sep, portText = description.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not portText.isdigit() or not 0 < int(portText) < 65536:
        raise ValueError(
            f"memcached server {description!r} is not host:port or unix:/path"
        )
    return host, int(portText)


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FLAG_CHUNK",
    "FLAG_HEAD",
    "FLAG_PLAIN",
    "MAX_CHUNKS",
    "MAX_KEY_LENGTH",
    "SAFE_KEY",
    "ChunkHead",
    "chunkKey",
    "memcachedKey",
    "parseServer",
    "valueChecksum",
]

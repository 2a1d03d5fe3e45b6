"""
Versions and deltas: version digests, the delta and whole-body codecs, HTTP
content handling around them, and the choice of a sibling base for URLs seen
for the first time.
"""

from railgun.delta.codec import (
    ENCODE_IN_THREAD_ABOVE,
    CodecRegistry,
    DeltaError,
    GzipFullCodec,
    IDeltaCodec,
    IdentityFullCodec,
    IFullCodec,
    ZstdFullCodec,
    ZstdPatchCodec,
    codecs,
    defaultRegistry,
    deferEncode,
)
from railgun.delta.content import (
    CLIENT_ENCODE_IN_THREAD_ABOVE,
    ContentDecodingError,
    chooseEncoding,
    decodeContentEncoding,
    deferEncodeBody,
    encodeBody,
    isDeltaEligible,
    isTextLike,
)
from railgun.delta.digest import DIGEST_RE, isValidDigest, versionDigest
from railgun.delta.siblings import SiblingIndex

__all__ = [
    "CLIENT_ENCODE_IN_THREAD_ABOVE",
    "CodecRegistry",
    "ContentDecodingError",
    "DIGEST_RE",
    "DeltaError",
    "ENCODE_IN_THREAD_ABOVE",
    "GzipFullCodec",
    "IDeltaCodec",
    "IFullCodec",
    "IdentityFullCodec",
    "SiblingIndex",
    "ZstdFullCodec",
    "ZstdPatchCodec",
    "chooseEncoding",
    "codecs",
    "decodeContentEncoding",
    "deferEncode",
    "deferEncodeBody",
    "defaultRegistry",
    "encodeBody",
    "isDeltaEligible",
    "isTextLike",
    "isValidDigest",
    "versionDigest",
]

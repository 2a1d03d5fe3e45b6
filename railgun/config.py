"""
Configuration of the two roles: typed, immutable attrs classes, built from a
TOML file and/or command-line options (see L{railgun.tap}), documented key by
key in C{docs/configuration.md}.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from attrs import field, frozen
from attrs.validators import optional

from railgun._listening import DEFAULT_BACKLOG
from railgun.http.routing import (
    HostMap,
    LinkAddress,
    OriginTarget,
    parseLinkAddress,
    parseOriginURL,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_LINK_PORT = 2408


class ConfigError(Exception):
    """
    A configuration value is missing, malformed or out of range; the message
    names the key and says what was expected.
    """


def _positive(instance: object, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{attribute.name} must be > 0, not {value!r}")


def _positiveInt(instance: object, attribute: Any, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{attribute.name} must be a whole number > 0, not {value!r}")


def _nonNegative(instance: object, attribute: Any, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, not {value!r}")


# The ranges the link protocol allows for the LinkTuning fields announced in
# HELLO (railgun.link.frames.SETTINGS_IDS; docs/protocol.md, "Settings").
# Repeated here so that reading a configuration does not import the link;
# tests/test_tap.py checks that both agree.
MAX_WINDOW = 2**31 - 1
LINK_SETTING_RANGES: dict[str, tuple[int, int]] = {
    "maxFrameSize": (16384, 16777215),
    "streamWindow": (0, MAX_WINDOW),
    "connectionWindow": (65535, MAX_WINDOW),
    "maxConcurrentStreams": (0, MAX_WINDOW),
}


def _linkSetting(instance: object, attribute: Any, value: int) -> None:
    low, high = LINK_SETTING_RANGES[attribute.name]
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise ConfigError(
            f"{attribute.name} must be a whole number from {low} to {high}, not {value!r}"
        )


def _zstdLevel(instance: object, attribute: Any, value: int) -> None:
    if not 1 <= value <= 22:
        raise ConfigError(
            f"{attribute.name} must be a zstd level from 1 to 22, not {value!r}"
        )


@frozen
class LinkTuning:
    """
    Settings of the link protocol that an operator may tune (both roles).
    Those announced in HELLO are checked against the ranges the link
    protocol allows (L{LINK_SETTING_RANGES}), so a bad value is a
    L{ConfigError} when the configuration is built, not an error when a
    service starts.

    @ivar pingInterval: seconds between PINGs; 0 disables keepalive.
    @ivar pingTimeout: seconds without a PONG after which a link is dead.
    @ivar helloTimeout: seconds a new link has to complete its HELLO exchange.
    @ivar drainTimeout: seconds open streams get to finish after GOAWAY.
    @ivar maxConcurrentStreams: streams a peer may have open on one link.
    @ivar streamWindow: initial per-stream receive window, bytes.
    @ivar connectionWindow: initial per-link receive window, bytes.
    @ivar maxFrameSize: largest frame payload accepted, bytes.
    @ivar maxBufferedBytes: bytes buffered for paused streams of one link
        before connection credit is held back.
    """

    pingInterval: float = field(default=10.0, validator=_nonNegative)
    pingTimeout: float = field(default=30.0, validator=_positive)
    helloTimeout: float = field(default=10.0, validator=_positive)
    drainTimeout: float = field(default=30.0, validator=_nonNegative)
    maxConcurrentStreams: int = field(default=1000, validator=_linkSetting)
    streamWindow: int = field(default=1 * MiB, validator=_linkSetting)
    connectionWindow: int = field(default=16 * MiB, validator=_linkSetting)
    maxFrameSize: int = field(default=64 * KiB, validator=_linkSetting)
    maxBufferedBytes: int = field(default=32 * MiB, validator=_positiveInt)

    def settings(self):  # -> railgun.link.frames.Settings
        """
        @return: the link HELLO settings these tunings announce.
        """
        from railgun.link.frames import Settings

        return Settings(
            maxFrameSize=self.maxFrameSize,
            initialStreamWindow=self.streamWindow,
            connectionWindow=self.connectionWindow,
            maxConcurrentStreams=self.maxConcurrentStreams,
        )

    def linkOptions(self) -> dict[str, Any]:
        """
        @return: keyword arguments for L{railgun.link.protocol.LinkProtocol}.
        """
        from railgun.delta.codec import codecs

        return dict(
            # Announced in HELLO; the origin role only uses a codec the
            # edge announced.
            codecs=codecs.deltaNames() + codecs.fullNames(),
            settings=self.settings(),
            pingInterval=self.pingInterval,
            pingTimeout=self.pingTimeout,
            helloTimeout=self.helloTimeout,
            drainTimeout=self.drainTimeout,
            maxBufferedBytes=self.maxBufferedBytes,
        )


@frozen
class StoreConfig:
    """
    Where a role keeps versions of pages.

    @ivar memoryBytes: bound of the in-process store, bytes.
    @ivar memcached: C{host:port} of memcached servers; when given, the
        origin role keeps versions there (shared by several processes).
    @ivar ttl: seconds a version is kept.
    """

    memoryBytes: int = field(default=256 * MiB, validator=_positiveInt)
    memcached: tuple[str, ...] = ()
    ttl: float = field(default=600.0, validator=_positive)
    timeout: float = field(default=0.5, validator=_positive)


@frozen
class DeltaConfig:
    """
    Delta compression of text-like responses.

    @ivar enabled: when false, bodies always cross the link in full.
    @ivar maxSize: largest body (identity bytes) held for a delta; larger
        bodies stream through.
    @ivar level: zstd level of delta encoding at the origin role (1..22):
        9 is fast and within ~8% of the best delta; 19 is the best, ~20x
        slower (docs/benchmarks.md, "Codec").
    @ivar largeLevel: the level for pages whose base is over 256 KiB,
        where level 9 loses most against the best delta; L{None} (the
        default) for C{level}. 19 saves ~500 bytes per 740 KB page but adds
        ~100 ms to its fetch (docs/benchmarks.md, "1. WAN page fetch").
    """

    enabled: bool = True
    maxSize: int = field(default=1 * MiB, validator=_positiveInt)
    level: int = field(default=9, validator=_zstdLevel)
    largeLevel: int | None = field(default=None, validator=optional(_zstdLevel))


@frozen
class OriginConfig:
    """
    The origin role (Railgun's "listener"): accepts links from edges and
    fetches each stream's request from the origin server its Host maps to.
    """

    origins: HostMap
    token: bytes
    certsDir: str | None = None
    linkListen: str = f"tcp:{DEFAULT_LINK_PORT}:interface=127.0.0.1"
    backlog: int = field(default=DEFAULT_BACKLOG, validator=_positiveInt)
    connectTimeout: float = field(default=5.0, validator=_positive)
    responseTimeout: float = field(default=30.0, validator=_positive)
    maxConnectionsPerOrigin: int = field(default=64, validator=_positiveInt)
    verifyOriginTLS: bool = True
    delta: DeltaConfig = DeltaConfig()
    store: StoreConfig = StoreConfig()
    link: LinkTuning = LinkTuning()


@frozen
class EdgeConfig:
    """
    The edge role: an HTTP/1.1 server that sends each request as a stream
    over a link to the origin role serving its Host.
    """

    links: HostMap
    token: bytes
    certsDir: str | None = None
    httpListen: str = "tcp:8080:interface=127.0.0.1"
    backlog: int = field(default=DEFAULT_BACKLOG, validator=_positiveInt)
    linksPerOrigin: int = field(default=2, validator=_positiveInt)
    tlsName: str | None = None
    fallback: HostMap | None = None
    maxHeaderBytes: int = field(default=16 * KiB, validator=_positiveInt)
    maxBodyBytes: int = field(default=2 * GiB, validator=_positiveInt)
    responseTimeout: float = field(default=60.0, validator=_positive)
    connectTimeout: float = field(default=5.0, validator=_positive)
    delta: DeltaConfig = DeltaConfig()
    store: StoreConfig = StoreConfig()
    link: LinkTuning = LinkTuning()


def parseOriginMap(entries: list[str]) -> HostMap:
    """
    @param entries: C{HOST=ORIGIN_URL} strings.
    @raise ConfigError: for a malformed entry.
    """
    return _parseMap(entries, parseOriginURL, "origin URL")


def parseLinkMap(entries: list[str]) -> HostMap:
    """
    @param entries: C{HOST=ADDRESS[:PORT]} strings.
    @raise ConfigError: for a malformed entry.
    """
    return _parseMap(entries, parseLinkAddress, "link address")


def _parseMap(entries: list[str], parseValue: Any, what: str) -> HostMap:
    try:
        return HostMap.parse(list(entries), parseValue)
    except ValueError as e:
        raise ConfigError(f"bad {what} mapping: {e}") from e


def readToml(path: str | Path) -> dict[str, Any]:
    """
    Read a configuration file.

    @raise ConfigError: if it cannot be read or is not valid TOML.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e


__all__ = [
    "ConfigError",
    "DeltaConfig",
    "EdgeConfig",
    "LinkAddress",
    "LinkTuning",
    "OriginConfig",
    "OriginTarget",
    "StoreConfig",
    "parseLinkMap",
    "parseOriginMap",
    "readToml",
]

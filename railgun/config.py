"""
Configuration of the two roles: typed, immutable attrs classes whose fields
are the settings schema (L{railgun.settings}): each field declares its flag,
TOML key, kind, range, roles and help. C{twistd railgun} builds them from a
TOML file and command-line options (L{railgun.tap}); a program embedding
Railgun builds them itself. Each key is documented in
C{docs/configuration.md}.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import evolve, frozen

from railgun._listening import DEFAULT_BACKLOG
from railgun.http.routing import (
    HostMap,
    LinkAddress,
    OriginTarget,
    parseLinkGroup,
    parseOriginURL,
)
from railgun.logs import LOG_FORMATS, LOG_LEVELS
from railgun.settings import (
    BOOLEAN,
    DURATION,
    ENDPOINT,
    HOSTMAP,
    LIST,
    NUMBER,
    ROLES,
    SIZE,
    STRING,
    TOKEN,
    WHOLE,
    ConfigError,
    Setting,
    section,
    setting,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_LINK_PORT = 2408

# memcached reads a longer expiry as a point in time
# (railgun.stores.memcached checks it too, when the store is made).
MEMCACHED_MAX_TTL = 30 * 24 * 3600


def _protocolRange(name: str) -> Any:
    """
    The range the link protocol allows for one of its HELLO settings
    (L{railgun.link.frames.SETTINGS_IDS}; docs/protocol.md, "Settings"),
    read when a value is checked, so that importing the configuration does
    not import the link.
    """

    def read() -> tuple[int, int]:
        from railgun.link.frames import SETTINGS_IDS

        for known, low, high in SETTINGS_IDS.values():
            if known == name:
                return low, high
        raise KeyError(name)

    return read


def _checkServers(value: Any, label: str) -> None:
    """
    Check memcached addresses: each parses, none is listed twice.
    """
    from railgun.stores.memcached import parseServer

    servers = [value] if isinstance(value, str) else value
    for server in servers:
        try:
            parseServer(server)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from e
    if len(set(servers)) != len(servers):
        raise ConfigError(f"{label}: a server is listed twice: {servers!r}")


def _servers(value: Any, label: str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _hostEntries(value: Any) -> list[str]:
    """
    Host maps are a TOML table (C{host = "value"}, or C{host = ["value",
    ...]} where a host may have several values: the edge's links) or a list
    of C{"HOST=VALUE"} strings (the command-line form).
    """
    if isinstance(value, dict):
        return [
            f"{host}={target}"
            for host, targets in value.items()
            for target in (targets if isinstance(targets, list) else [targets])
        ]
    return list(value)


def _originMap(value: Any, label: str) -> HostMap:
    return parseOriginMap(_hostEntries(value))


def _linkMap(value: Any, label: str) -> HostMap:
    return parseLinkMap(_hostEntries(value))


def _fallbackMap(value: Any, label: str) -> HostMap | None:
    entries = _hostEntries(value)
    return parseOriginMap(entries) if entries else None


def _dictionaryPattern(text: str) -> str:
    if not text.startswith("/") or not text.isascii() or not text.isprintable():
        raise ValueError(f"dictionary match pattern {text!r} is not a path pattern")
    return text


def _dictionaryPatterns(value: Any, label: str) -> HostMap | None:
    entries = _hostEntries(value)
    return (
        _parseMap(entries, _dictionaryPattern, "dictionary match") if entries else None
    )


def _token(
    values: dict[str, Any], fromFlags: bool, environ: Mapping[str, str], role: str
) -> bytes:
    """
    The link token: from C{token} or C{token_file} (those of the command
    line if either is given there, else the file's), else from
    C{RAILGUN_TOKEN}. C{--role both} makes one when none is given (here:
    the empty token).
    """
    if "token" in values and "token_file" in values:
        raise ConfigError(
            "give the token with --token or --token-file, not both"
            if fromFlags
            else "the config file sets both token and token_file; keep one"
        )
    token = values.get("token")
    if token is None and values.get("token_file"):
        path = values["token_file"]
        try:
            with open(path, "rb") as f:
                token = f.read().strip().decode("utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read token file {path}: {e.strerror}") from e
    if token is None:
        token = environ.get("RAILGUN_TOKEN")
    if not token:
        if role == "both":
            return b""
        raise ConfigError(
            "a link token is required: --token, --token-file, token = ... or RAILGUN_TOKEN"
        )
    encoded: bytes = token.encode("utf-8")
    if len(encoded) > 1024:
        raise ConfigError("the link token is longer than 1024 bytes")
    return encoded


# Settings held by both roles' configurations, declared once.

_TOKEN = Setting(
    "token",
    TOKEN,
    flag="token",
    top=True,
    help="the shared link token (prefer --token-file or RAILGUN_TOKEN; not with --token-file)",
    also=(
        Setting(
            "token_file",
            STRING,
            flag="token-file",
            top=True,
            help="a file holding the shared link token (not with --token)",
        ),
    ),
    resolve=_token,
)
_CERTS = Setting(
    "certs",
    STRING,
    flag="certs",
    top=True,
    required="--certs DIR (make one with `railgun certs DIR`)",
    help="directory made by `railgun certs` (ca.pem, origin.pem, edge.pem)",
)
_BACKLOG = Setting(
    "backlog",
    WHOLE,
    flag="backlog",
    top=True,
    above=0,
    help="listen backlog of the edge's HTTP port and the origin role's link port, "
    "capped by the kernel's somaxconn; a backlog= in the endpoint string wins",
)
_CONNECT_TIMEOUT = Setting(
    "connect_timeout",
    DURATION,
    flag="connect-timeout",
    alsoTop=True,
    above=0,
    help="seconds to connect to an origin server or origin role",
)
_RESPONSE_TIMEOUT = Setting(
    "response_timeout", DURATION, flag="response-timeout", alsoTop=True, above=0
)


@frozen
class LinkTuning:
    """
    Settings of the link protocol that an operator may tune (both roles).
    Those announced in HELLO are checked against the ranges the link
    protocol allows, so a bad value is a L{ConfigError} when the
    configuration is built, not an error when a service starts.

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

    pingInterval: float = setting(
        "ping_interval",
        DURATION,
        10.0,
        flag="ping-interval",
        atLeast=0,
        help="seconds between link PINGs, 0 = off",
    )
    pingTimeout: float = setting(
        "ping_timeout",
        DURATION,
        30.0,
        flag="ping-timeout",
        above=0,
        help="seconds without PONG before a link is dead",
    )
    helloTimeout: float = setting(
        "hello_timeout",
        DURATION,
        10.0,
        above=0,
        help="seconds a new link has to complete its HELLO exchange",
    )
    drainTimeout: float = setting(
        "drain_timeout",
        DURATION,
        30.0,
        atLeast=0,
        help="seconds open streams get to finish after GOAWAY",
    )
    maxConcurrentStreams: int = setting(
        "max_concurrent_streams",
        WHOLE,
        1000,
        flag="max-streams",
        between=_protocolRange("maxConcurrentStreams"),
        help="streams a peer may open on one link",
    )
    streamWindow: int = setting(
        "stream_window",
        SIZE,
        1 * MiB,
        between=_protocolRange("initialStreamWindow"),
        rangeName="a whole number",
        help="initial per-stream receive window",
    )
    connectionWindow: int = setting(
        "connection_window",
        SIZE,
        16 * MiB,
        between=_protocolRange("connectionWindow"),
        help="initial per-link receive window",
    )
    maxFrameSize: int = setting(
        "max_frame_size",
        SIZE,
        64 * KiB,
        between=_protocolRange("maxFrameSize"),
        help="largest frame payload accepted",
    )
    maxBufferedBytes: int = setting(
        "max_buffered_bytes",
        SIZE,
        32 * MiB,
        above=0,
        help="bytes held for paused streams of one link before connection "
        "credit is held back",
    )

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
    @ivar timeout: seconds a memcached operation may take.
    """

    memoryBytes: int = setting(
        "memory_bytes",
        SIZE,
        256 * MiB,
        flag="store-size",
        above=0,
        help="bytes of versions kept in memory (edge: the latest version per URL; "
        "origin: versions by digest, unless --memcached)",
    )
    memcached: tuple[str, ...] = setting(
        "memcached",
        LIST,
        (),
        flag="memcached",
        roles=("origin",),
        wrongRole="the edge keeps its versions in its own memory (--store-size)",
        wanted='a list of "HOST:PORT" or "unix:/path" strings',
        check=_checkServers,
        convert=_servers,
        help="HOST:PORT of a memcached server keeping versions, shared by origin "
        "roles (repeatable; refused with --role edge)",
    )
    ttl: float = setting(
        "ttl", DURATION, 600.0, above=0, help="seconds a version is kept"
    )
    timeout: float = setting(
        "timeout",
        DURATION,
        0.5,
        above=0,
        help="seconds a memcached operation may take before it counts as a miss",
    )

    def __attrs_post_init__(self) -> None:
        if self.memcached and self.ttl > MEMCACHED_MAX_TTL:
            raise ConfigError(
                f"store.ttl must be at most {MEMCACHED_MAX_TTL} seconds (30 days) "
                f"with memcached, not {self.ttl!r}"
            )


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
    @ivar versions: distinct versions the edge keeps per URL, the latest
        included, and names to the origin role as bases (1: the latest
        only).
    @ivar budgetMs: encode-time budget per delta, in milliseconds: a delta
        whose level-19 encode is estimated to fit is made at level 19, the
        others at C{level} / C{largeLevel}; 0 turns it off.
    @ivar bestFrom: pages smaller than this many bytes get C{level} even
        when level 19 fits the budget (tens of bytes saved for 1-3 ms).
    @ivar preparedMemory: bytes the origin role may spend on new versions
        hashed ahead of time at level 19 (with a budget), least recently
        used dropped first.
    """

    enabled: bool = setting(
        "enabled",
        BOOLEAN,
        True,
        flag="no-delta",
        switchValue=False,
        help="send bodies in full (no delta compression)",
    )
    maxSize: int = setting(
        "max_size",
        SIZE,
        1 * MiB,
        flag="delta-max-size",
        above=0,
        help="largest body kept for deltas",
    )
    level: int = setting(
        "level",
        WHOLE,
        9,
        flag="delta-level",
        roles=("origin",),
        between=(1, 22),
        rangeName="a zstd level",
        help="zstd level of deltas, 1-22",
    )
    largeLevel: int | None = setting(
        "large_level",
        WHOLE,
        None,
        flag="delta-large-level",
        roles=("origin",),
        between=(1, 22),
        rangeName="a zstd level",
        defaultText="the delta level",
        help="zstd level of deltas of pages over 256 KiB",
    )
    versions: int = setting(
        "versions",
        WHOLE,
        4,
        flag="delta-versions",
        roles=("edge",),
        between=(1, 9),
        rangeName="a count of versions",
        help="distinct versions kept per URL at the edge (the latest included)",
    )
    budgetMs: float = setting(
        "budget_ms",
        NUMBER,
        30.0,
        flag="delta-budget-ms",
        roles=("origin",),
        atLeast=0,
        help="encode-time budget per delta (ms): level 19 when it fits; 0 off",
    )
    bestFrom: int = setting(
        "best_from",
        SIZE,
        48 * KiB,
        flag="delta-best-from",
        roles=("origin",),
        atLeast=0,
        help="smallest page made at level 19 within the budget (smaller: delta.level)",
    )
    preparedMemory: int = setting(
        "prepared_memory",
        SIZE,
        64 * MiB,
        flag="delta-prepared-memory",
        roles=("origin",),
        above=0,
        help="memory for new versions hashed ahead at level 19 (with a budget)",
    )


@frozen
class OriginConfig:
    """
    The origin role (Railgun's "listener"): accepts links from edges and
    fetches each stream's request from the origin server its Host maps to.
    """

    origins: HostMap = setting(
        "map",
        HOSTMAP,
        flag="map",
        convert=_originMap,
        required="at least one --map HOST=ORIGIN_URL",
        help="HOST=ORIGIN_URL, the origin server for a Host (repeatable; HOST may "
        "be *.domain or *)",
    )
    token: bytes = _TOKEN.field()
    certsDir: str | None = _CERTS.field(None)
    linkListen: str = setting(
        "link_listen",
        ENDPOINT,
        f"tcp:{DEFAULT_LINK_PORT}:interface=127.0.0.1",
        flag="link-listen",
        bothDefault="tcp:0:interface=127.0.0.1",
        help="endpoint for links",
    )
    backlog: int = _BACKLOG.field(DEFAULT_BACKLOG)
    connectTimeout: float = _CONNECT_TIMEOUT.field(5.0)
    responseTimeout: float = _RESPONSE_TIMEOUT.field(
        30.0,
        help="seconds for the origin server's response head, and the longest "
        "silence inside its body",
    )
    maxConnectionsPerOrigin: int = setting(
        "max_connections_per_origin",
        WHOLE,
        64,
        above=0,
        help="persistent connections kept per origin server",
    )
    verifyOriginTLS: bool = setting(
        "verify_origin_tls",
        BOOLEAN,
        True,
        flag="insecure-origin-tls",
        switchValue=False,
        help="do not verify HTTPS origin servers' certificates",
    )
    delta: DeltaConfig = section("delta", DeltaConfig)
    store: StoreConfig = section("store", StoreConfig)
    link: LinkTuning = section("link", LinkTuning)


@frozen
class EdgeConfig:
    """
    The edge role: an HTTP/1.1 server that sends each request as a stream
    over a link to the origin role serving its Host.
    """

    links: HostMap = setting(
        "links",
        HOSTMAP,
        flag="link",
        convert=_linkMap,
        required="at least one --link HOST=ADDRESS[:PORT]",
        help="HOST=ADDRESS[:PORT], the origin role serving a Host (repeatable; "
        "port 2408 by default)",
    )
    token: bytes = _TOKEN.field()
    certsDir: str | None = _CERTS.field(None)
    httpListen: str = setting(
        "http_listen",
        ENDPOINT,
        "tcp:8080:interface=127.0.0.1",
        flag="http-listen",
        help="endpoint for HTTP clients",
    )
    backlog: int = _BACKLOG.field(DEFAULT_BACKLOG)
    linksPerOrigin: int = setting(
        "links_per_origin",
        WHOLE,
        2,
        flag="links-per-origin",
        above=0,
        help="links kept to each origin role",
    )
    tlsName: str | None = setting(
        "tls_name",
        STRING,
        None,
        flag="tls-name",
        defaultText="the link's host",
        help="name expected in the origin role's certificate",
    )
    fallback: HostMap | None = setting(
        "fallback",
        HOSTMAP,
        None,
        flag="fallback",
        convert=_fallbackMap,
        help="HOST=ORIGIN_URL, fetch directly from this origin when no link is up "
        "(repeatable)",
    )
    maxHeaderBytes: int = setting(
        "max_header_bytes",
        SIZE,
        16 * KiB,
        flag="max-header-bytes",
        above=0,
        help="request line + headers limit, else 431",
    )
    maxBodyBytes: int = setting(
        "max_body_bytes",
        SIZE,
        2 * GiB,
        flag="max-body-bytes",
        above=0,
        help="request body limit, else 413",
    )
    dictionaries: bool = setting(
        "dictionaries",
        BOOLEAN,
        False,
        flag="dictionaries",
        help="offer versions to browsers as compression dictionaries and serve "
        "dcz deltas against them (RFC 9842)",
    )
    dictionaryMatch: HostMap | None = setting(
        "dictionary_match",
        HOSTMAP,
        None,
        flag="dictionary-match",
        convert=_dictionaryPatterns,
        help="HOST=PATTERN, the match pattern a Host's versions are offered with "
        "as dictionaries, instead of each page's own path (repeatable)",
    )
    diagnosticHeader: str = setting(
        "diagnostic_header",
        STRING,
        "public",
        flag="diagnostic-header",
        choices=("off", "public", "full"),
        help="the Railgun response header: off, public (its ratio only where it "
        "tells nothing of another user's page) or full",
    )
    responseTimeout: float = _RESPONSE_TIMEOUT.field(
        60.0, help="seconds for the response head to come back over the link"
    )
    connectTimeout: float = _CONNECT_TIMEOUT.field(5.0)
    delta: DeltaConfig = section("delta", DeltaConfig)
    store: StoreConfig = section("store", StoreConfig)
    link: LinkTuning = section("link", LinkTuning)


def _checkAccessLog(value: Any, label: str) -> None:
    if not value.strip():
        raise ConfigError(f"{label} must be a file name or - (standard output)")


@frozen
class LogConfig:
    """
    The daemon's logs (C{twistd railgun} only: an embedding program logs as
    it likes, and passes an access log to the services itself).

    @ivar level: the least severe event written (C{debug} lines are off by
        default).
    @ivar format: the event log as C{text} (twistd's lines) or C{json}.
    @ivar access: where the access log goes (a file, or C{-} for standard
        output); L{None}: no access log.
    @ivar accessFormat: the access log as C{text} or C{json}; L{None}: as
        C{format}.
    """

    level: str = setting(
        "level",
        STRING,
        "info",
        flag="log-level",
        choices=LOG_LEVELS,
        help="least severe event logged: debug, info, warn, error or critical",
    )
    format: str = setting(
        "format",
        STRING,
        "text",
        flag="log-format",
        choices=LOG_FORMATS,
        help="event log lines as text or json (one object a line)",
    )
    access: str | None = setting(
        "access",
        STRING,
        None,
        flag="access-log",
        check=_checkAccessLog,
        defaultText="off",
        help="write an access log line per request (edge) and per stream "
        "(origin role) to this file, or - for standard output",
    )
    accessFormat: str | None = setting(
        "access_format",
        STRING,
        None,
        flag="access-log-format",
        choices=LOG_FORMATS,
        defaultText="the --log-format",
        help="access log lines as text or json",
    )

    def accessLogFormat(self) -> str:
        """
        @return: the access log's format (its own, else the event log's).
        """
        return self.accessFormat or self.format


#: where C{--role both} serves its admin endpoint unless told otherwise.
BOTH_ADMIN_LISTEN = "tcp:9090:interface=127.0.0.1"


def _adminOff(value: str) -> bool:
    return value.strip().lower() in ("", "none", "off")


def _checkAdminListen(value: str, name: str) -> None:
    if not _adminOff(value):
        from railgun.settings import checkEndpoint

        checkEndpoint(value, name)


def _checkStatsURL(value: str, name: str) -> None:
    if value and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {value!r}")


@frozen
class RailgunConfig:
    """
    What C{twistd railgun} runs: the role, and the configuration of each
    role it runs (L{None} for the other).

    @ivar role: C{origin}, C{edge} or C{both}.
    @ivar origin: the origin role's configuration. Under C{both} its map
        may be empty (the sample origin is served) and its token empty (one
        is made).
    @ivar edge: the edge's configuration. Under C{both} its links may be
        empty (it links to the origin role of the same process).
    @ivar workers: processes serving the role (C{--workers}); more than one
        runs a supervisor (L{railgun.workers}).
    @ivar log: the daemon's event and access logs.
    @ivar samplePeriod: C{both}: seconds between editions of the sample
        origin.
    @ivar adminListen: the admin endpoint's endpoint, or L{None} for none.
    @ivar statsURL: where to POST the stats document, or L{None}.
    @ivar statsInterval: seconds between two such POSTs.
    """

    def __attrs_post_init__(self) -> None:
        if self.workers > 1:
            if self.role == "both":
                raise ConfigError(
                    "--workers / workers: --role both runs in one process;"
                    " give each role its own twistd with --workers"
                )
            if self.origin is not None and not self.origin.store.memcached:
                raise ConfigError(
                    "--workers / workers: origin role workers share versions"
                    " through memcached: give --memcached (each worker keeping its"
                    " own versions would answer most deltas in full)"
                )

    role: str = setting(
        "role",
        STRING,
        flag="role",
        top=True,
        choices=ROLES,
        help="edge, origin or both (both roles in one process)",
    )
    origin: OriginConfig | None = section(
        "origin", OriginConfig, roles=("origin", "both"), default=None
    )
    edge: EdgeConfig | None = section(
        "edge", EdgeConfig, roles=("edge", "both"), default=None
    )
    workers: int = setting(
        "workers",
        WHOLE,
        1,
        flag="workers",
        top=True,
        roles=("edge", "origin"),
        above=0,
        help="processes serving the role, sharing its listening socket; the"
        " origin role's need --memcached to share versions",
    )
    log: LogConfig = section("log", LogConfig)
    samplePeriod: float = setting(
        "sample_period",
        DURATION,
        5.0,
        flag="sample-period",
        table="both",
        roles=("both",),
        above=0,
        help="seconds between editions of the sample origin",
    )
    adminListen: str | None = setting(
        "listen",
        STRING,
        None,
        flag="admin-listen",
        table="admin",
        bothDefault=BOTH_ADMIN_LISTEN,
        check=_checkAdminListen,
        convert=lambda value, name: None if _adminOff(value) else value,
        defaultText=f"off; both: {BOTH_ADMIN_LISTEN}",
        help="endpoint of the admin endpoint (/metrics, /stats, /healthz, "
        "/readyz, dashboard), none = off",
    )
    statsURL: str | None = setting(
        "url",
        STRING,
        None,
        flag="stats-url",
        table="stats",
        check=_checkStatsURL,
        convert=lambda value, name: value or None,
        help="POST the stats document (JSON) to this http(s) URL",
    )
    statsInterval: float = setting(
        "interval",
        DURATION,
        60.0,
        flag="stats-interval",
        table="stats",
        above=0,
        help="seconds between two POSTs to --stats-url",
    )

    def originConfig(self, entries: list[str] | None = None) -> OriginConfig:
        """
        @param entries: C{HOST=ORIGIN_URL} entries replacing the configured
            map.
        @raise ValueError: if the role runs no origin role.
        """
        if self.origin is None:
            raise ValueError(f"--role {self.role} runs no origin role")
        if entries is None:
            return self.origin
        return evolve(self.origin, origins=parseOriginMap(entries))

    def edgeConfig(self, entries: list[str] | None = None) -> EdgeConfig:
        """
        @param entries: C{HOST=ADDRESS[:PORT]} entries replacing the
            configured links.
        @raise ValueError: if the role runs no edge.
        """
        if self.edge is None:
            raise ValueError(f"--role {self.role} runs no edge")
        if entries is None:
            return self.edge
        return evolve(self.edge, links=parseLinkMap(entries))


def parseOriginMap(entries: list[str]) -> HostMap:
    """
    @param entries: C{HOST=ORIGIN_URL} strings.
    @raise ConfigError: for a malformed entry.
    """
    return _parseMap(entries, parseOriginURL, "origin URL")


def parseLinkMap(entries: list[str]) -> HostMap:
    """
    @param entries: C{HOST=ADDRESS[:PORT]} strings; a host given in several
        entries (or with addresses separated by commas) is served by all of
        those origin roles.
    @return: host -> L{LinkGroup}.
    @raise ConfigError: for a malformed entry, or an address given twice
        for one host.
    """
    grouped: dict[str, list[str]] = {}
    for entry in entries:
        host, equals, text = entry.partition("=")
        if not equals:
            grouped.setdefault(entry, [])
            continue
        grouped.setdefault(host.strip(), []).append(text.strip())
    joined = [
        f"{host}={','.join(texts)}" if texts else host
        for host, texts in grouped.items()
    ]
    return _parseMap(joined, parseLinkGroup, "link address")


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


def __getattr__(name: str) -> Any:
    if name == "LINK_SETTING_RANGES":
        # The ranges LinkTuning checks, by field (read from the link
        # protocol's settings).
        import attrs

        from railgun.settings import SETTING

        return {
            field.name: field.metadata[SETTING].between()
            for field in attrs.fields(LinkTuning)
            if callable(field.metadata[SETTING].between)
        }
    raise AttributeError(name)


__all__ = [
    "ConfigError",
    "DeltaConfig",
    "EdgeConfig",
    "LinkAddress",
    "LinkTuning",
    "LogConfig",
    "OriginConfig",
    "OriginTarget",
    "RailgunConfig",
    "StoreConfig",
    "parseLinkMap",
    "parseOriginMap",
    "readToml",
]

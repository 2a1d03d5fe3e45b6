"""
The twistd plugin's options and service: C{twistd -n railgun --role edge},
C{--role origin} or C{--role both}. Every option can also be set in a TOML
file (C{--config}); command-line flags override the file. Each key is
documented in C{docs/configuration.md}.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from railgun.config import (
    ConfigError,
    DeltaConfig,
    EdgeConfig,
    LinkTuning,
    OriginConfig,
    StoreConfig,
    parseLinkMap,
    parseOriginMap,
    readToml,
)
from railgun.tls import CredentialsError

ROLES = ("edge", "origin", "both")

# memcached reads a longer expiry as a point in time
# (railgun.stores.memcached checks it too, when the store is made).
MEMCACHED_MAX_TTL = 30 * 24 * 3600

log = Logger()


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _size(text: str) -> int:
    """
    Parse a byte size: C{1048576}, C{64k}, C{256m}, C{2g} (powers of 1024).
    """
    text = str(text).strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# (flag, TOML section or None for top level, TOML key, parser)
_SCALARS: list[tuple[str, str | None, str, Callable[[str], Any]]] = [
    ("certs", None, "certs", str),
    ("token", None, "token", str),
    ("token-file", None, "token_file", str),
    ("link-listen", "origin", "link_listen", str),
    ("http-listen", "edge", "http_listen", str),
    ("links-per-origin", "edge", "links_per_origin", int),
    ("tls-name", "edge", "tls_name", str),
    ("max-header-bytes", "edge", "max_header_bytes", _size),
    ("max-body-bytes", "edge", "max_body_bytes", _size),
    ("connect-timeout", None, "connect_timeout", _float),
    ("response-timeout", None, "response_timeout", _float),
    ("ping-interval", "link", "ping_interval", _float),
    ("ping-timeout", "link", "ping_timeout", _float),
    ("max-streams", "link", "max_concurrent_streams", int),
    ("delta-max-size", "delta", "max_size", _size),
    ("delta-level", "delta", "level", int),
    ("delta-large-level", "delta", "large_level", int),
    ("store-size", "store", "memory_bytes", _size),
    ("sample-period", "both", "sample_period", _float),
    ("backlog", None, "backlog", int),
]

# What each parser of _SCALARS reads, for its usage errors.
_PARSED: dict[Callable[[str], Any], str] = {
    str: "a string",
    int: "a whole number",
    _float: "a number",
    _size: "a size in bytes (1048576, 64k, 256m, 2g)",
}

# Keys of the file that a flag replaces besides its own, so that the flag
# wins wherever the file sets the same thing: the timeout flags apply to both
# roles, over the per-role values of [origin] and [edge] too; either token
# flag replaces both ways of giving the token in the file.
_ALSO_REPLACES: dict[str, list[tuple[str | None, str]]] = {
    "token": [(None, "token_file")],
    "token-file": [(None, "token")],
    "connect-timeout": [("origin", "connect_timeout"), ("edge", "connect_timeout")],
    "response-timeout": [("origin", "response_timeout"), ("edge", "response_timeout")],
}


class Options(usage.Options):
    """
    Options of C{twistd railgun}.
    """

    synopsis = "--role edge|origin|both [options]"
    longdesc = (
        "Railgun: a persistent, multiplexed, mutually authenticated TLS link "
        "between a CDN edge and the origin, with delta compression of "
        "dynamic pages. Some settings exist only as keys of the --config "
        "file; docs/configuration.md lists every option and key."
    )

    optParameters = [
        ["role", None, None, "edge, origin or both (both roles in one process)"],
        ["config", "c", None, "a TOML configuration file; flags override it"],
        [
            "certs",
            None,
            None,
            "directory made by `railgun certs` (ca.pem, origin.pem, edge.pem)",
        ],
        [
            "token",
            None,
            None,
            "the shared link token (prefer --token-file or RAILGUN_TOKEN; not with --token-file)",
        ],
        [
            "token-file",
            None,
            None,
            "a file holding the shared link token (not with --token)",
        ],
        [
            "link-listen",
            None,
            None,
            "origin: endpoint for links [default: tcp:2408:interface=127.0.0.1]",
        ],
        [
            "http-listen",
            None,
            None,
            "edge: endpoint for HTTP clients [default: tcp:8080:interface=127.0.0.1]",
        ],
        [
            "links-per-origin",
            None,
            None,
            "edge: links kept to each origin role [default: 2]",
        ],
        [
            "tls-name",
            None,
            None,
            "edge: name expected in the origin role's certificate [default: the link's host]",
        ],
        [
            "max-header-bytes",
            None,
            None,
            "edge: request line + headers limit, else 431 [default: 16k]",
        ],
        [
            "max-body-bytes",
            None,
            None,
            "edge: request body limit, else 413 [default: 2g]",
        ],
        [
            "connect-timeout",
            None,
            None,
            "seconds to connect to an origin server or origin role [default: 5]",
        ],
        [
            "response-timeout",
            None,
            None,
            "origin: seconds for the origin server's response head, and the longest "
            "silence inside its body [default: 30]; edge: seconds for the response head to come back over the "
            "link [default: 60]",
        ],
        [
            "ping-interval",
            None,
            None,
            "seconds between link PINGs, 0 = off [default: 10]",
        ],
        [
            "ping-timeout",
            None,
            None,
            "seconds without PONG before a link is dead [default: 30]",
        ],
        [
            "max-streams",
            None,
            None,
            "streams a peer may open on one link [default: 1000]",
        ],
        ["delta-max-size", None, None, "largest body kept for deltas [default: 1m]"],
        ["delta-level", None, None, "origin: zstd level of deltas, 1-22 [default: 9]"],
        [
            "delta-large-level",
            None,
            None,
            "origin: zstd level of deltas of pages over 256 KiB [default: the delta level]",
        ],
        [
            "store-size",
            None,
            None,
            "bytes of versions kept in memory (edge: the latest version per URL; "
            "origin: versions by digest, unless --memcached) [default: 256m]",
        ],
        [
            "sample-period",
            None,
            None,
            "both: seconds between editions of the sample origin [default: 5]",
        ],
        [
            "backlog",
            None,
            None,
            "listen backlog of the edge's HTTP port and the origin role's link "
            "port, capped by the kernel's somaxconn; a backlog= in the endpoint "
            "string wins [default: 1024]",
        ],
    ]
    optFlags = [
        ["no-delta", None, "send bodies in full (no delta compression)"],
        [
            "insecure-origin-tls",
            None,
            "origin: do not verify HTTPS origin servers' certificates",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        # --help prints the opt_* methods' docstrings: one line each, not
        # their indentation.
        self.docs = {
            name: " ".join(doc.split()) if doc else doc
            for name, doc in self.docs.items()
        }
        self["map"] = []
        self["link"] = []
        self["fallback"] = []
        self["memcached"] = []

    def opt_map(self, value: str) -> None:
        """
        origin: HOST=ORIGIN_URL, the origin server for a Host (repeatable;
        HOST may be *.domain or *)
        """
        self["map"].append(value)

    def opt_link(self, value: str) -> None:
        """
        edge: HOST=ADDRESS[:PORT], the origin role serving a Host
        (repeatable; port 2408 by default)
        """
        self["link"].append(value)

    def opt_fallback(self, value: str) -> None:
        """
        edge: HOST=ORIGIN_URL, fetch directly from this origin when no link
        is up (repeatable)
        """
        self["fallback"].append(value)

    def opt_memcached(self, value: str) -> None:
        """
        origin: HOST:PORT of a memcached server keeping versions, shared by
        origin roles (repeatable; refused with --role edge)
        """
        self["memcached"].append(value)

    def postOptions(self) -> None:
        try:
            self.settings = _merge(self)
            role = self.settings.get("role")
            if role not in ROLES:
                raise usage.UsageError(
                    f"--role must be one of {', '.join(ROLES)} (got {role!r})"
                )
            self.role = role
            self.built = buildConfigs(role, self.settings)
            if role in ("edge", "origin"):
                # Read the certificates now, so a missing or wrong file is a
                # one-line usage error, not a traceback from makeService.
                from railgun.tls import loadCredentials

                self.credentials = loadCredentials(self.settings["certs"], role)
        except CredentialsError as e:
            raise usage.UsageError(str(e)) from e
        except ConfigError as e:
            raise usage.UsageError(_translate(str(e))) from e
        except ValueError as e:
            raise usage.UsageError(f"bad option value: {e}") from e


def _merge(options: Options) -> dict[str, Any]:
    """
    The TOML file's settings with the command line's on top, as one nested
    dict shaped like the file.
    """
    settings: dict[str, Any] = {}
    if options["config"]:
        settings = readToml(options["config"])
    if options["role"]:
        settings["role"] = options["role"]
    if options["token"] is not None and options["token-file"] is not None:
        raise usage.UsageError("give the token with --token or --token-file, not both")
    for flag, section, key, parse in _SCALARS:
        if options[flag] is not None:
            try:
                value = parse(options[flag])
            except ValueError as e:
                raise usage.UsageError(
                    f"--{flag} must be {_PARSED[parse]}, not {options[flag]!r}"
                ) from e
            for otherSection, otherKey in _ALSO_REPLACES.get(flag, []):
                fromFile = (
                    settings if otherSection is None else settings.get(otherSection)
                )
                if isinstance(fromFile, dict):
                    fromFile.pop(otherKey, None)
            (settings if section is None else settings.setdefault(section, {}))[key] = (
                value
            )
    for flag, section, key in [
        ("map", "origin", "map"),
        ("link", "edge", "links"),
        ("fallback", "edge", "fallback"),
    ]:
        if options[flag]:
            settings.setdefault(section, {})[key] = list(options[flag])
    if options["memcached"]:
        settings.setdefault("store", {})["memcached"] = list(options["memcached"])
    if options["no-delta"]:
        settings.setdefault("delta", {})["enabled"] = False
    if options["insecure-origin-tls"]:
        settings.setdefault("origin", {})["verify_origin_tls"] = False
    return settings


def _entries(value: Any, key: str) -> list[str]:
    """
    Host maps are a TOML table (C{host = "value"}) or a list of
    C{"HOST=VALUE"} strings (the command-line form).
    """
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{host}={target}" for host, target in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ConfigError(f"{key} must be a table of host = value, or a list of HOST=VALUE")


def _token(settings: dict[str, Any]) -> bytes:
    """
    The link token: from C{token} or C{token_file} (the command line's
    replaced the file's in L{_merge}), else from C{RAILGUN_TOKEN}.
    """
    if "token" in settings and "token_file" in settings:
        raise ConfigError("the config file sets both token and token_file; keep one")
    token = settings.get("token")
    if token is None and settings.get("token_file"):
        path = settings["token_file"]
        try:
            with open(path, "rb") as f:
                token = f.read().strip().decode("utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read token file {path}: {e.strerror}") from e
    if token is None:
        token = os.environ.get("RAILGUN_TOKEN")
    if not token:
        raise ConfigError(
            "a link token is required: --token, --token-file, token = ... or RAILGUN_TOKEN"
        )
    encoded = token.encode("utf-8")
    if len(encoded) > 1024:
        raise ConfigError("the link token is longer than 1024 bytes")
    return encoded


def _pick(
    section: dict[str, Any], keys: dict[str, str], allowed: set[str], where: str
) -> dict[str, Any]:
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(sorted(unknown))}")
    return {attr: section[key] for key, attr in keys.items() if key in section}


# The file's keys in each table, and the configuration field each sets.
_LINK_KEYS = {
    "ping_interval": "pingInterval",
    "ping_timeout": "pingTimeout",
    "hello_timeout": "helloTimeout",
    "drain_timeout": "drainTimeout",
    "max_concurrent_streams": "maxConcurrentStreams",
    "stream_window": "streamWindow",
    "connection_window": "connectionWindow",
    "max_frame_size": "maxFrameSize",
    "max_buffered_bytes": "maxBufferedBytes",
}
_DELTA_KEYS = {
    "enabled": "enabled",
    "max_size": "maxSize",
    "level": "level",
    "large_level": "largeLevel",
}
_STORE_KEYS = {
    "memory_bytes": "memoryBytes",
    "memcached": "memcached",
    "ttl": "ttl",
    "timeout": "timeout",
}
_ORIGIN_KEYS = {
    "link_listen": "linkListen",
    "max_connections_per_origin": "maxConnectionsPerOrigin",
    "verify_origin_tls": "verifyOriginTLS",
    "connect_timeout": "connectTimeout",
    "response_timeout": "responseTimeout",
}
_EDGE_KEYS = {
    "http_listen": "httpListen",
    "links_per_origin": "linksPerOrigin",
    "tls_name": "tlsName",
    "max_header_bytes": "maxHeaderBytes",
    "max_body_bytes": "maxBodyBytes",
    "connect_timeout": "connectTimeout",
    "response_timeout": "responseTimeout",
}
_TABLES = {
    "origin": _ORIGIN_KEYS,
    "edge": _EDGE_KEYS,
    "link": _LINK_KEYS,
    "delta": _DELTA_KEYS,
    "store": _STORE_KEYS,
    "both": {"sample_period": "samplePeriod"},
}
_TOP = {
    "role",
    "backlog",
    "token",
    "token_file",
    "certs",
    "connect_timeout",
    "response_timeout",
    *_TABLES,
}

# The type of each key's value: (section or None for top level, key) -> kind.
# The host maps (origin.map, edge.links, edge.fallback) are checked by
# _entries.
_KINDS: dict[tuple[str | None, str], str] = {
    (None, "role"): "string",
    (None, "token"): "string",
    (None, "token_file"): "string",
    (None, "certs"): "string",
    (None, "connect_timeout"): "number",
    (None, "response_timeout"): "number",
    (None, "backlog"): "integer",
    ("origin", "link_listen"): "endpoint",
    ("origin", "max_connections_per_origin"): "integer",
    ("origin", "verify_origin_tls"): "boolean",
    ("origin", "connect_timeout"): "number",
    ("origin", "response_timeout"): "number",
    ("edge", "http_listen"): "endpoint",
    ("edge", "links_per_origin"): "integer",
    ("edge", "tls_name"): "string",
    ("edge", "max_header_bytes"): "size",
    ("edge", "max_body_bytes"): "size",
    ("edge", "connect_timeout"): "number",
    ("edge", "response_timeout"): "number",
    ("link", "ping_interval"): "number",
    ("link", "ping_timeout"): "number",
    ("link", "hello_timeout"): "number",
    ("link", "drain_timeout"): "number",
    ("link", "max_concurrent_streams"): "integer",
    ("link", "stream_window"): "size",
    ("link", "connection_window"): "size",
    ("link", "max_frame_size"): "size",
    ("link", "max_buffered_bytes"): "size",
    ("delta", "enabled"): "boolean",
    ("delta", "max_size"): "size",
    ("delta", "level"): "integer",
    ("delta", "large_level"): "integer",
    ("store", "memory_bytes"): "size",
    ("store", "memcached"): "servers",
    ("store", "ttl"): "number",
    ("store", "timeout"): "number",
    ("both", "sample_period"): "number",
}

_KIND_WANTED = {
    "string": "a string",
    "endpoint": "a string (a Twisted endpoint such as tcp:2408:interface=127.0.0.1)",
    "number": "a number",
    "integer": "a whole number",
    "size": "a whole number of bytes (sizes in the file are plain integers, "
    "like 1048576: the k, m and g suffixes are for flags only)",
    "boolean": "true or false",
    "servers": 'a list of "HOST:PORT" or "unix:/path" strings',
}

# The flag that sets each key, where there is one (the timeout flags set
# the per-role keys too).
_FLAGS: dict[tuple[str | None, str], str] = {
    **{(section, key): flag for flag, section, key, _ in _SCALARS},
    ("origin", "connect_timeout"): "connect-timeout",
    ("origin", "response_timeout"): "response-timeout",
    ("edge", "connect_timeout"): "connect-timeout",
    ("edge", "response_timeout"): "response-timeout",
    ("store", "memcached"): "memcached",
}


def _label(section: str | None, key: str) -> str:
    """
    How a usage error names a setting: C{--ping-interval /
    link.ping_interval}, or the key alone when no flag sets it.
    """
    where = key if section is None else f"{section}.{key}"
    flag = _FLAGS.get((section, key))
    return f"--{flag} / {where}" if flag else where


# The configuration fields' names, as ConfigError messages start, and the
# settings they come from; a role's timeouts come from any of three keys.
_FIELD_LABELS: dict[str, str] = {
    attr: _label(section, key)
    for section, keys in _TABLES.items()
    for key, attr in keys.items()
}
_FIELD_LABELS["backlog"] = _label(None, "backlog")
for _key in ("connect_timeout", "response_timeout"):
    _FIELD_LABELS[_EDGE_KEYS[_key]] = (
        f"{_label(None, _key)} (or origin.{_key}, edge.{_key})"
    )


def _translate(message: str) -> str:
    """
    Name the flag and TOML key in a L{ConfigError} message of the
    configuration classes, which name their fields: C{pingInterval must be
    >= 0} becomes C{--ping-interval / link.ping_interval must be >= 0}.
    """
    name, sep, rest = message.partition(" must ")
    if sep and name in _FIELD_LABELS:
        return f"{_FIELD_LABELS[name]} must {rest}"
    return message


def _checkEndpoint(label: str, description: str) -> None:
    """
    Parse a server endpoint string, without listening.

    @raise ConfigError: if it is not one, with a suggestion for a bare port
        or C{host:port}.
    """
    from twisted.internet.endpoints import serverFromString

    try:
        # Parsing only: the endpoint is made for a reactor it never uses.
        serverFromString(object(), description)
    except ValueError as e:
        hint = ""
        bare = re.fullmatch(r"(?:([^:]+):)?(\d+)", description)
        if bare:
            hint = f"; did you mean tcp:{bare[2]}:interface={bare[1] or '127.0.0.1'}?"
        raise ConfigError(
            f"{label} must be a Twisted endpoint string, such as tcp:2408:interface=127.0.0.1; "
            f"{description!r} is not one ({e}){hint}"
        ) from e
    except OSError as e:  # a file it names (ssl: certificates, say)
        raise ConfigError(f"{label}: {description!r} cannot be used: {e}") from e


def _checkServers(label: str, value: Any) -> list[str]:
    """
    @return: the memcached servers: a list of addresses, or one address
        given as a string.
    @raise ConfigError: for anything else, or an address that is not one.
    """
    from railgun.stores.memcached import parseServer

    servers = [value] if isinstance(value, str) else value
    if not isinstance(servers, list) or not all(isinstance(v, str) for v in servers):
        raise ConfigError(f"{label} must be {_KIND_WANTED['servers']}, not {value!r}")
    for server in servers:
        try:
            parseServer(server)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from e
    if len(set(servers)) != len(servers):
        raise ConfigError(f"{label}: a server is listed twice: {servers!r}")
    return servers


def _checkTypes(settings: dict[str, Any]) -> None:
    """
    Check the type of every value the settings hold (those of the file:
    the flags' were parsed already), and the endpoints and memcached
    addresses.

    @raise ConfigError: naming the flag and key of a value of the wrong
        type.
    """
    for name in _TABLES:
        if not isinstance(settings.get(name, {}), dict):
            raise ConfigError(
                f"{name} must be a table ([{name}]), not {settings[name]!r}"
            )
    for (section, key), kind in _KINDS.items():
        table = settings if section is None else settings.get(section, {})
        if key not in table:
            continue
        value = table[key]
        label = _label(section, key)
        if kind == "servers":
            table[key] = _checkServers(label, value)
            continue
        if kind == "boolean":
            good = isinstance(value, bool)
        elif kind in ("string", "endpoint"):
            good = isinstance(value, str)
        elif isinstance(value, bool):  # a bool is an int to Python
            good = False
        elif kind == "number":
            good = isinstance(value, (int, float)) and math.isfinite(value)
        else:
            good = isinstance(value, int)
        if not good:
            raise ConfigError(f"{label} must be {_KIND_WANTED[kind]}, not {value!r}")
        if kind == "endpoint":
            _checkEndpoint(label, value)


def _linkTuning(settings: dict[str, Any]) -> LinkTuning:
    return LinkTuning(
        **_pick(settings.get("link", {}), _LINK_KEYS, set(_LINK_KEYS), "link")
    )


def _delta(settings: dict[str, Any]) -> DeltaConfig:
    return DeltaConfig(
        **_pick(settings.get("delta", {}), _DELTA_KEYS, set(_DELTA_KEYS), "delta")
    )


def _store(settings: dict[str, Any]) -> StoreConfig:
    values = _pick(settings.get("store", {}), _STORE_KEYS, set(_STORE_KEYS), "store")
    if "memcached" in values:
        values["memcached"] = tuple(values["memcached"])
    return StoreConfig(**values)


@frozen
class RoleSettings:
    """
    Validated settings of the roles to run, from which their configuration
    objects are built (for C{both}, only once the ports are known).

    @ivar common: keyword values shared by both roles' configurations.
    @ivar origin: the origin role's own keyword values.
    @ivar originMap: its C{HOST=ORIGIN_URL} entries.
    @ivar edge: the edge's own keyword values.
    @ivar linkEntries: its C{HOST=ADDRESS} entries.
    @ivar samplePeriod: C{both}: seconds between sample origin editions.
    """

    role: str
    common: dict[str, Any]
    origin: dict[str, Any]
    originMap: list[str]
    edge: dict[str, Any]
    linkEntries: list[str]
    samplePeriod: float = 5.0

    def originConfig(
        self, entries: list[str] | None = None, **overrides: Any
    ) -> OriginConfig:
        """
        @param entries: the origin map (default: the configured one).
        """
        values = {**self.common, **self.origin, **overrides}
        return OriginConfig(origins=parseOriginMap(entries or self.originMap), **values)

    def edgeConfig(
        self, entries: list[str] | None = None, **overrides: Any
    ) -> EdgeConfig:
        """
        @param entries: the link map (default: the configured one).
        """
        values = {**self.common, **self.edge, **overrides}
        return EdgeConfig(links=parseLinkMap(entries or self.linkEntries), **values)


def _roleSection(
    settings: dict[str, Any], name: str, keys: dict[str, str], maps: set[str]
) -> dict[str, Any]:
    section = dict(settings.get(name, {}))
    values = _pick(section, keys, set(keys) | maps, name)
    # Timeouts set at the top level apply to the role unless it sets its own.
    for key in ("connect_timeout", "response_timeout"):
        if key in settings and key not in section:
            values[keys[key]] = settings[key]
    return values


def buildConfigs(role: str, settings: dict[str, Any]) -> RoleSettings:
    """
    Check the merged settings of C{role} and keep what its configuration
    objects are built from.

    @raise ConfigError: for anything missing or malformed.
    """
    unknown = set(settings) - _TOP
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    _checkTypes(settings)
    store = settings.get("store", {})
    if store.get("memcached"):
        if role == "edge":
            raise ConfigError(
                "--memcached / store.memcached is for the origin role: the edge keeps "
                "its versions in its own memory (--store-size); remove it for --role edge"
            )
        if store.get("ttl", 0) > MEMCACHED_MAX_TTL:
            raise ConfigError(
                f"store.ttl must be at most {MEMCACHED_MAX_TTL} seconds (30 days) with memcached, "
                f"not {store['ttl']!r}"
            )
    hasToken = (
        any(settings.get(k) for k in ("token", "token_file"))
        or "RAILGUN_TOKEN" in os.environ
    )
    common: dict[str, Any] = dict(
        # --role both makes a random token when none is given.
        token=_token(settings) if role != "both" or hasToken else b"",
        certsDir=settings.get("certs"),
        delta=_delta(settings),
        store=_store(settings),
        link=_linkTuning(settings),
    )
    if "backlog" in settings:
        common["backlog"] = settings["backlog"]
    origin = _roleSection(settings, "origin", _ORIGIN_KEYS, {"map"})
    edge = _roleSection(settings, "edge", _EDGE_KEYS, {"links", "fallback"})
    originMap = _entries(settings.get("origin", {}).get("map"), "origin.map")
    linkEntries = _entries(settings.get("edge", {}).get("links"), "edge.links")
    fallback = _entries(settings.get("edge", {}).get("fallback"), "edge.fallback")
    edge["fallback"] = parseOriginMap(fallback) if fallback else None
    if role == "origin" and not originMap:
        raise ConfigError("the origin role needs at least one --map HOST=ORIGIN_URL")
    if role == "edge" and not linkEntries:
        raise ConfigError("the edge role needs at least one --link HOST=ADDRESS[:PORT]")
    if role != "both" and common["certsDir"] is None:
        raise ConfigError(
            f"the {role} role needs --certs DIR (make one with `railgun certs DIR`)"
        )
    both = _pick(
        settings.get("both", {}),
        {"sample_period": "samplePeriod"},
        {"sample_period"},
        "both",
    )
    samplePeriod = float(both.get("samplePeriod", 5.0))
    if samplePeriod <= 0:
        raise ConfigError(
            f"{_label('both', 'sample_period')} must be > 0, not {samplePeriod!r}"
        )
    built = RoleSettings(
        role,
        common,
        origin,
        originMap,
        edge,
        linkEntries,
        samplePeriod=samplePeriod,
    )
    # Build now what can be built, so that bad values are usage errors.
    if role == "origin":
        built.originConfig()
    elif role == "edge":
        built.edgeConfig()
    return built


def exitStatusAtExit(status: int) -> None:
    """
    Make the process end with C{status} once twistd is done with it.

    twistd offers a plugin no way to set its exit status (Twisted ticket
    #11335): once the reactor has stopped it removes its pid file, logs
    "Server Shut Down." and returns, and the interpreter ends with status
    0. An exit handler runs after all of that, and one registered now runs
    before those registered earlier: it flushes what the interpreter would
    (standard output and error, the C{logging} module's handlers) and ends
    the process with C{status}.
    """

    def end() -> None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status)

    atexit.register(end)


class TwistdService(MultiService):
    """
    What C{twistd railgun} runs: the role's service, and if it cannot start
    (a port in use, most often), a one-line critical message, the reactor
    stopped and exit status 1, rather than a process that runs on, serving
    nothing. Embedders run the role services themselves, whose
    C{whenListening()} fails instead: what to do is theirs to decide.

    @ivar role: C{edge}, C{origin} or C{both}.
    @ivar roleService: the role's service.
    """

    def __init__(
        self,
        role: str,
        roleService: IService,
        reactor: Any,
        exit: Callable[[int], None] = exitStatusAtExit,
    ) -> None:
        super().__init__()
        self.role = role
        self.roleService = roleService
        self._reactor = reactor
        self._exit = exit
        roleService.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        service: Any = self.roleService
        started = (
            service.whenStarted() if self.role == "both" else service.whenListening()
        )
        started.addErrback(self._cannotStart)

    def _cannotStart(self, failure: Failure) -> None:
        cause = " ".join(str(failure.value).split()) or type(failure.value).__name__
        if not cause.endswith("."):
            cause += "."
        log.critical(
            "railgun --role {role} cannot start: {cause} Stopping (exit status 1).",
            role=self.role,
            cause=cause,
        )
        self._exit(1)
        self._reactor.callWhenRunning(self._reactor.stop)


def makeService(options: Options) -> IService:
    """
    Build the service of the chosen role, inside a L{TwistdService} (twistd
    calls this).
    """
    from twisted.internet import reactor

    built = options.built
    service: IService
    if options.role == "origin":
        from railgun.origin.service import OriginService

        service = OriginService(
            built.originConfig(), reactor, credentials=options.credentials
        )
    elif options.role == "edge":
        from railgun.edge.service import EdgeService

        service = EdgeService(
            built.edgeConfig(), reactor, credentials=options.credentials
        )
    else:
        from railgun.both import BothService

        service = BothService(built, reactor)
    return TwistdService(options.role, service, reactor)

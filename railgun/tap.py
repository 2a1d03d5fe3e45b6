"""
The twistd plugin's options and service: C{twistd -n railgun --role edge},
C{--role origin} or C{--role both}. Every option can also be set in a TOML
file (C{--config}); command-line flags override the file. Each key is
documented in C{docs/configuration.md}.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

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


def _float(text: str) -> float:
    return float(text)


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
    ("store-size", "store", "memory_bytes", _size),
    ("sample-period", "both", "sample_period", _float),
]


class Options(usage.Options):
    """
    Options of C{twistd railgun}.
    """

    synopsis = "--role edge|origin|both [options]"
    longdesc = (
        "Railgun: a persistent, multiplexed, mutually authenticated TLS link "
        "between a CDN edge and the origin, with delta compression of "
        "dynamic pages. See docs/configuration.md for every option."
    )

    optParameters = [
        ["role", None, None, "edge, origin or both (both roles in one process)"],
        ["config", "c", None, "a TOML configuration file; flags override it"],
        ["certs", None, None, "directory made by `railgun certs` (ca.pem, origin.pem, edge.pem)"],
        ["token", None, None, "the shared link token (prefer --token-file or RAILGUN_TOKEN)"],
        ["token-file", None, None, "a file holding the shared link token"],
        ["link-listen", None, None, "origin: endpoint for links [default: tcp:2408:interface=127.0.0.1]"],
        ["http-listen", None, None, "edge: endpoint for HTTP clients [default: tcp:8080:interface=127.0.0.1]"],
        ["links-per-origin", None, None, "edge: links kept to each origin role [default: 2]"],
        ["tls-name", None, None, "edge: name expected in the origin role's certificate [default: the link's host]"],
        ["max-header-bytes", None, None, "edge: request line + headers limit, else 431 [default: 16k]"],
        ["max-body-bytes", None, None, "edge: request body limit, else 413 [default: 2g]"],
        ["connect-timeout", None, None, "seconds to connect to an origin server or origin role [default: 5]"],
        ["response-timeout", None, None, "seconds for a response to start (origin: 30, edge: 60)"],
        ["ping-interval", None, None, "seconds between link PINGs, 0 = off [default: 10]"],
        ["ping-timeout", None, None, "seconds without PONG before a link is dead [default: 30]"],
        ["max-streams", None, None, "streams a peer may open on one link [default: 1000]"],
        ["delta-max-size", None, None, "largest body kept for deltas [default: 1m]"],
        ["delta-level", None, None, "origin: zstd level of deltas, 1-22 [default: 9]"],
        ["store-size", None, None, "bytes of versions kept in memory [default: 256m]"],
        ["sample-period", None, None, "both: seconds between editions of the sample origin [default: 5]"],
    ]
    optFlags = [
        ["no-delta", None, "send bodies in full (no delta compression)"],
        ["insecure-origin-tls", None, "origin: do not verify HTTPS origin servers' certificates"],
    ]

    def __init__(self) -> None:
        super().__init__()
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
        HOST:PORT of a memcached server for the version store (repeatable)
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

                self.credentials = loadCredentials(self.built[role].certsDir, role)
        except CredentialsError as e:
            raise usage.UsageError(str(e)) from e
        except ConfigError as e:
            raise usage.UsageError(str(e)) from e
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
    for flag, section, key, parse in _SCALARS:
        if options[flag] is not None:
            try:
                value = parse(options[flag])
            except ValueError as e:
                raise usage.UsageError(f"--{flag}: {e}") from e
            (settings if section is None else settings.setdefault(section, {}))[key] = value
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
        raise ConfigError("a link token is required: --token, --token-file, token = ... or RAILGUN_TOKEN")
    encoded = token.encode("utf-8")
    if len(encoded) > 1024:
        raise ConfigError("the link token is longer than 1024 bytes")
    return encoded


def _pick(section: dict[str, Any], keys: dict[str, str], allowed: set[str], where: str) -> dict[str, Any]:
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(sorted(unknown))}")
    return {attr: section[key] for key, attr in keys.items() if key in section}


def _linkTuning(settings: dict[str, Any]) -> LinkTuning:
    keys = {
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
    return LinkTuning(**_pick(settings.get("link", {}), keys, set(keys), "link"))


def _delta(settings: dict[str, Any]) -> DeltaConfig:
    keys = {"enabled": "enabled", "max_size": "maxSize", "level": "level"}
    return DeltaConfig(**_pick(settings.get("delta", {}), keys, set(keys), "delta"))


def _store(settings: dict[str, Any]) -> StoreConfig:
    keys = {"memory_bytes": "memoryBytes", "memcached": "memcached", "ttl": "ttl", "timeout": "timeout"}
    values = _pick(settings.get("store", {}), keys, set(keys), "store")
    if "memcached" in values:
        values["memcached"] = tuple(values["memcached"])
    return StoreConfig(**values)


_TOP = {"role", "token", "token_file", "certs", "connect_timeout", "response_timeout",
        "origin", "edge", "link", "delta", "store", "both"}


def buildConfigs(role: str, settings: dict[str, Any]) -> dict[str, Any]:
    """
    Build the typed configuration of C{role} from merged settings.

    @return: C{{"origin": OriginConfig, "edge": EdgeConfig, ...}} for the
        roles that run (C{both} builds what it can now and the rest at start).
    @raise ConfigError: for anything missing or malformed.
    """
    unknown = set(settings) - _TOP
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    common = dict(
        token=_token(settings) if role != "both" else (
            _token(settings) if settings.get("token") or settings.get("token_file") else b""
        ),
        certsDir=settings.get("certs"),
        delta=_delta(settings),
        store=_store(settings),
        link=_linkTuning(settings),
    )
    result: dict[str, Any] = {}
    timeouts = {k: settings[k] for k in ("connect_timeout", "response_timeout") if k in settings}
    if role in ("origin", "both"):
        section = dict(settings.get("origin", {}))
        originKeys = {
            "link_listen": "linkListen",
            "max_connections_per_origin": "maxConnectionsPerOrigin",
            "verify_origin_tls": "verifyOriginTLS",
        }
        values = _pick(section, originKeys, set(originKeys) | {"map", "connect_timeout", "response_timeout"}, "origin")
        for key, attr in (("connect_timeout", "connectTimeout"), ("response_timeout", "responseTimeout")):
            if key in section:
                values[attr] = section[key]
            elif key in timeouts:
                values[attr] = timeouts[key]
        entries = _entries(section.get("map"), "origin.map")
        if role == "origin" and not entries:
            raise ConfigError("the origin role needs at least one --map HOST=ORIGIN_URL")
        if role == "origin" and common["certsDir"] is None:
            raise ConfigError("the origin role needs --certs DIR (make one with `railgun certs DIR`)")
        result["originMap"] = entries
        result["origin"] = values
    if role in ("edge", "both"):
        section = dict(settings.get("edge", {}))
        edgeKeys = {
            "http_listen": "httpListen",
            "links_per_origin": "linksPerOrigin",
            "tls_name": "tlsName",
            "max_header_bytes": "maxHeaderBytes",
            "max_body_bytes": "maxBodyBytes",
        }
        values = _pick(section, edgeKeys, set(edgeKeys) | {"links", "fallback", "connect_timeout", "response_timeout"}, "edge")
        for key, attr in (("connect_timeout", "connectTimeout"), ("response_timeout", "responseTimeout")):
            if key in section:
                values[attr] = section[key]
            elif key in timeouts:
                values[attr] = timeouts[key]
        links = _entries(section.get("links"), "edge.links")
        if role == "edge" and not links:
            raise ConfigError("the edge role needs at least one --link HOST=ADDRESS[:PORT]")
        if role == "edge" and common["certsDir"] is None:
            raise ConfigError("the edge role needs --certs DIR (make one with `railgun certs DIR`)")
        fallback = _entries(section.get("fallback"), "edge.fallback")
        values["fallback"] = parseOriginMap(fallback) if fallback else None
        result["linkEntries"] = links
        result["edge"] = values
    result["common"] = common
    result["both"] = dict(settings.get("both", {}))
    if role == "origin":
        result["origin"] = OriginConfig(origins=parseOriginMap(result.pop("originMap")), **common, **result["origin"])
    elif role == "edge":
        result["edge"] = EdgeConfig(links=parseLinkMap(result.pop("linkEntries")), **common, **result["edge"])
    return result


def makeService(options: Options) -> IService:
    """
    Build the service of the chosen role (twistd calls this).
    """
    from twisted.internet import reactor

    built = options.built
    if options.role == "origin":
        from railgun.origin.service import OriginService

        return OriginService(built["origin"], reactor, credentials=options.credentials)
    if options.role == "edge":
        from railgun.edge.service import EdgeService

        return EdgeService(built["edge"], reactor, credentials=options.credentials)
    from railgun.both import BothService

    return BothService(built, reactor)

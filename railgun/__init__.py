"""
Railgun for Twisted: a persistent, multiplexed, mutual-TLS link between a
CDN edge and a daemon next to the origin, with delta compression.

The two roles are ordinary Twisted services (L{EdgeService},
L{OriginService}) built from configuration objects (L{EdgeConfig},
L{OriginConfig}); C{twistd railgun} builds them from options.
"""

from typing import Any

# The one source of the version: setup.py reads it, `railgun --version` and
# `twistd railgun --version` print it.
__version__ = "0.1.0.dev0"

__all__ = [
    "EdgeConfig",
    "EdgeService",
    "OriginConfig",
    "OriginService",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import railgun` (the twistd plugin, the CLI) stays
    # cheap and never pulls in the reactor.
    if name in ("EdgeConfig", "OriginConfig"):
        from railgun import config

        return getattr(config, name)
    if name == "EdgeService":
        from railgun.edge.service import EdgeService

        return EdgeService
    if name == "OriginService":
        from railgun.origin.service import OriginService

        return OriginService
    raise AttributeError(name)

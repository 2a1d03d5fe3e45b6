"""
L{ClientService} without its per-attempt log line.

Twisted's L{ClientService} logs C{Scheduling retry N to connect <endpoint>}
at every back-off step, naming the endpoint by its C{repr} and never saying
why the attempt failed. The edge's link pools say why themselves, once per
change of cause (L{railgun.edge.linkfailures}); this subclass replaces the
class-level logger the machine is given (the private C{_log}) with one that
drops those lines.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService
from twisted.logger import ILogObserver, Logger
from zope.interface import provider

#: Twisted's private names this module uses, by the class that defines them:
#: checked by tests/test_compat.py.
TWISTED_PRIVATE = {"twisted.application.internet.ClientService": ("_log",)}


@provider(ILogObserver)
def _discard(event: dict[str, Any]) -> None:
    pass


class QuietClientService(ClientService):
    """
    A L{ClientService} whose own log lines (retry scheduling) are dropped.
    """

    _log = Logger(observer=_discard)

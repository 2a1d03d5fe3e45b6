"""
Why a link to an origin role could not be established, in words an operator
can act on, and a log that says it once per change of cause rather than once
per back-off attempt.

Pure logic: no reactor, no transport. L{railgun.edge.links.LinkPool} feeds it
the failures of its dials and HELLO exchanges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from attrs import define, frozen
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error as ierror
from twisted.python.failure import Failure

from railgun.link.errors import ErrorCode, ProtocolError


@frozen
class LinkFailure:
    """
    One classified failure.

    @ivar cause: a short stable key (C{refused}, C{dns}, C{timeout},
        C{tls-unknown-ca}, C{tls-name}, C{tls}, C{token}, C{closed},
        C{other}): what repeats are compared by, and the metrics label.
    @ivar text: the sentence for the log, naming what to do where we know.
    """

    cause: str
    text: str


def _chain(value: BaseException | None) -> Iterator[BaseException]:
    """
    The exception and what it was raised from or wraps (a few levels).
    """
    for _ in range(6):
        if value is None:
            return
        yield value
        inner = value.__cause__ or value.__context__
        if inner is None and value.args and isinstance(value.args[0], Failure):
            inner = value.args[0].value
        value = inner


def _sslText(error: SSL.Error) -> str:
    # OpenSSL's error stack: [(library, function, reason), ...]
    parts = []
    for entry in (
        error.args[0] if error.args and isinstance(error.args[0], list) else []
    ):
        if isinstance(entry, tuple) and entry:
            parts.append(str(entry[-1]))
    return "; ".join(parts) or str(error)


def classifyLinkFailure(
    failure: Failure, *, tlsName: str, connectTimeout: float
) -> LinkFailure:
    """
    Say why a link could not be established.

    @param failure: what the dial or the HELLO exchange failed with.
    @param tlsName: the name the edge checks in the origin role's certificate.
    @param connectTimeout: the dial's timeout, for the timeout message.
    """
    chain = list(_chain(failure.value))
    # The most specific cause anywhere in the chain wins: a name mismatch
    # surfaces as the SSL error it was raised inside.
    for cause in chain:
        if isinstance(cause, VerificationError):
            return LinkFailure(
                "tls-name",
                f"TLS: the origin role's certificate does not carry the name"
                f" {tlsName!r} the edge checks: give --tls-name the --origin-name"
                " the certificates were made with, or make them again with"
                f" --origin-name {tlsName}",
            )
        if isinstance(cause, ProtocolError) and cause.code == ErrorCode.AUTH_FAILED:
            return LinkFailure(
                "token",
                "the origin role refused the token (AUTH_FAILED): both roles"
                " must be given the same link token",
            )
    for cause in chain:
        if isinstance(cause, ierror.ConnectionRefusedError):
            return LinkFailure(
                "refused",
                "connection refused (is the origin role running and listening"
                " on that address? see its --link-listen)",
            )
        if isinstance(cause, ierror.DNSLookupError):
            return LinkFailure(
                "dns", "the host name could not be resolved (DNS lookup failed)"
            )
        if isinstance(cause, ierror.TimeoutError | TimeoutError):
            return LinkFailure(
                "timeout",
                f"no answer within {connectTimeout:g} s (a firewall dropping"
                " packets, or the wrong address; see --connect-timeout)",
            )
        if isinstance(cause, SSL.Error):
            text = _sslText(cause)
            lowered = text.lower()
            if "certificate verify failed" in lowered:
                return LinkFailure(
                    "tls-unknown-ca",
                    f"TLS: the origin role's certificate is not signed by the CA"
                    f" in the edge's ca.pem ({text}): both roles must use the"
                    " certificates of one deployment (railgun certs)",
                )
            if "unknown ca" in lowered or "certificate unknown" in lowered:
                return LinkFailure(
                    "tls-unknown-ca",
                    f"TLS: the origin role does not accept the edge's certificate"
                    f" ({text}): both roles must use the certificates of one"
                    " deployment (railgun certs)",
                )
            return LinkFailure("tls", f"TLS handshake failed: {text}")
    if failure.check(ierror.ConnectionDone, ierror.ConnectionLost):
        return LinkFailure(
            "closed",
            "the connection closed before the link was ready"
            f" ({failure.getErrorMessage()})",
        )
    return LinkFailure("other", failure.getErrorMessage() or repr(failure.value))


@define
class FailureLog:
    """
    Log a link's failures once per change of cause.

    The first failure is logged; the same cause again is only counted; a
    different cause, or the link coming up, logs the count of the repeats
    that were not.

    @ivar _emit: called with (message format, fields) for a log line.
    """

    _emit: Callable[..., None]
    _last: LinkFailure | None = None
    _repeats: int = 0

    def failed(self, failure: LinkFailure, address: str) -> None:
        """
        One attempt to reach C{address} failed.
        """
        if self._last is not None and failure.cause == self._last.cause:
            self._repeats += 1
            return
        self._flushRepeats(address)
        self._last = failure
        self._emit(
            "link to {address} failed: {why}",
            address=address,
            why=failure.text,
            cause=failure.cause,
        )

    def succeeded(self, address: str) -> None:
        """
        A link to C{address} came up: the next failure is news again.
        """
        self._flushRepeats(address)
        self._last = None

    def _flushRepeats(self, address: str) -> None:
        if self._repeats and self._last is not None:
            self._emit(
                "link to {address}: {count} more attempts failed the same way"
                " ({cause})",
                address=address,
                count=self._repeats,
                cause=self._last.cause,
            )
        self._repeats = 0

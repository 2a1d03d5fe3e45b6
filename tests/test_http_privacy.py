"""
The sharing policy (L{railgun.http.privacy}): which exchanges may become a
version shared across users.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.http.privacy import (
    carriesCredentials,
    exchangeShareable,
    requestShareable,
)

PAGE = [(b"content-type", b"text/html")]
COOKIE = [(b"cookie", b"session=abc")]
AUTH = [(b"authorization", b"Bearer secret")]


class ExchangeShareableTests(SynchronousTestCase):
    """
    L{exchangeShareable} follows a shared cache's rules.
    """

    def test_ordinaryPage(self) -> None:
        """
        A page with no private marks, to a request without credentials, is
        shared.
        """
        self.assertTrue(exchangeShareable([], PAGE))

    def test_cookieRequestPublicPage(self) -> None:
        """
        A request's Cookie alone does not make its response private: an
        ordinary page sent to logged-in users keeps its deltas.
        """
        self.assertTrue(exchangeShareable(COOKIE, PAGE + [(b"vary", b"Accept")]))

    def test_authorization(self) -> None:
        """
        A response to a request with Authorization is never shared, even
        marked public.
        """
        self.assertFalse(exchangeShareable(AUTH, PAGE))
        self.assertFalse(
            exchangeShareable(AUTH, PAGE + [(b"cache-control", b"public")])
        )

    def test_cacheControlPrivate(self) -> None:
        """
        Cache-Control private (any case, with field names, among other
        directives) and no-store make a response one user's.
        """
        for value in (
            b"private",
            b"PRIVATE",
            b"max-age=0, private",
            b'private="set-cookie, x-user"',
            b"no-store",
            b"no-cache , No-Store",
        ):
            self.assertFalse(
                exchangeShareable([], PAGE + [(b"cache-control", value)]), value
            )

    def test_cacheControlOthers(self) -> None:
        """
        Other directives (no-cache, max-age, public) leave a response
        shared; a directive merely containing 'private' is not 'private'.
        """
        for value in (b"no-cache", b"max-age=60, public", b"x-not-private"):
            self.assertTrue(
                exchangeShareable([], PAGE + [(b"cache-control", value)]), value
            )

    def test_setCookie(self) -> None:
        """
        A response that sets a cookie is one user's.
        """
        self.assertFalse(exchangeShareable([], PAGE + [(b"set-cookie", b"a=b")]))
        self.assertFalse(exchangeShareable([], PAGE + [(b"set-cookie2", b"a=b")]))

    def test_varyCookie(self) -> None:
        """
        A response varying on Cookie (or on everything) to a request with a
        Cookie is that user's; without a Cookie in the request it is the
        page everyone without one gets.
        """
        for vary in (b"Cookie", b"accept-encoding, cookie", b"*"):
            headers = PAGE + [(b"vary", vary)]
            self.assertFalse(exchangeShareable(COOKIE, headers), vary)
            self.assertTrue(exchangeShareable([], headers), vary)

    @given(
        st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40))),
        st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40))),
    )
    def test_anyHeaders(self, request: list, response: list) -> None:
        """
        Any header lists give an answer, never an exception; a private
        mark added to them always makes the exchange private.
        """
        exchangeShareable(request, response)
        self.assertFalse(
            exchangeShareable(request, response + [(b"cache-control", b"private")])
        )
        self.assertFalse(exchangeShareable(request + AUTH, response))


class RequestTests(SynchronousTestCase):
    """
    What the request alone says.
    """

    def test_requestShareable(self) -> None:
        """
        Only Authorization makes a request's response unshareable before
        the response is known.
        """
        self.assertTrue(requestShareable([]))
        self.assertTrue(requestShareable(COOKIE))
        self.assertFalse(requestShareable(AUTH))

    def test_carriesCredentials(self) -> None:
        """
        Cookie and Authorization are credentials; other headers are not.
        """
        self.assertFalse(carriesCredentials(PAGE))
        self.assertTrue(carriesCredentials(COOKIE))
        self.assertTrue(carriesCredentials(AUTH))

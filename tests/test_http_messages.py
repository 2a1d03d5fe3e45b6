"""
Tests for L{railgun.http.messages}.
"""

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.http.messages import (
    CONTROL_BASE,
    CONTROL_BODY,
    CONTROL_DIGEST,
    BadMessage,
    RequestHead,
    ResponseHead,
    responseHasBody,
    splitControl,
    stripControl,
)

hypothesisSettings = settings(derandomize=True, database=None, deadline=None)

LOWER_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
TCHARS = LOWER_TCHARS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _value(raw: bytes) -> bytes:
    # Drop the whitespace a field value cannot start or end with.
    return raw.strip(b" \t")


names = (
    st.text(LOWER_TCHARS, min_size=1, max_size=16)
    .map(str.encode)
    .filter(lambda n: n != b"host")
)
values = st.binary(max_size=24).map(
    lambda b: _value(bytes(c for c in b if c == 9 or 0x20 <= c != 0x7F))
)
regularHeaders = st.lists(st.tuples(names, values), max_size=8)
methods = st.text(TCHARS, min_size=1, max_size=10).map(str.encode)
hostNames = st.from_regex(r"[A-Za-z0-9\-._~!$&'()*+,;=]{1,20}", fullmatch=True)
authorities = st.one_of(
    hostNames,
    st.tuples(hostNames, st.integers(0, 99999)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:8080"),
).map(str.encode)
paths = st.binary(max_size=30).map(
    lambda b: b"/" + bytes(c for c in b if c > 0x20 and c not in (0x23, 0x7F))
)


@st.composite
def requestHeads(draw: st.DrawFn) -> RequestHead:
    method = draw(methods)
    path = draw(paths | st.just(b"*")) if method == b"OPTIONS" else draw(paths)
    return RequestHead(
        method=method,
        scheme=draw(st.sampled_from([b"http", b"https"])),
        authority=draw(authorities),
        path=path,
        headers=draw(regularHeaders),
    )


responseHeads = st.builds(
    ResponseHead, status=st.integers(200, 599), headers=regularHeaders
)


def _request(**changes: object) -> RequestHead:
    fields: dict[str, object] = dict(
        method=b"GET",
        scheme=b"https",
        authority=b"www.example.com",
        path=b"/a?b=c",
        headers=[(b"accept", b"*/*")],
    )
    fields.update(changes)
    return RequestHead(**fields)  # type: ignore[arg-type]


GOOD_REQUEST_BLOCK = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"www.example.com"),
    (b":path", b"/a?b=c"),
    (b"accept", b"*/*"),
]


class RequestHeadTests(SynchronousTestCase):
    """
    Tests for L{RequestHead}.
    """

    def test_toLinkHeaders(self) -> None:
        """
        Pseudo-headers come first, in a fixed order, then the headers.
        """
        self.assertEqual(_request().toLinkHeaders(), GOOD_REQUEST_BLOCK)

    def test_fromLinkHeaders(self) -> None:
        """
        A well-formed block decodes to the head that encodes it.
        """
        self.assertEqual(RequestHead.fromLinkHeaders(GOOD_REQUEST_BLOCK), _request())

    def test_pseudoOrderFree(self) -> None:
        """
        Pseudo-headers may come in any order, as long as all precede the
        regular headers.
        """
        block = list(reversed(GOOD_REQUEST_BLOCK[:4])) + GOOD_REQUEST_BLOCK[4:]
        self.assertEqual(RequestHead.fromLinkHeaders(block), _request())

    def test_tupleSubclasses(self) -> None:
        """
        Tuple subclasses (as hpack's HeaderTuple) are accepted and compare
        equal.
        """

        class HeaderTuple(tuple):  # type: ignore[type-arg]
            pass

        block = [HeaderTuple(h) for h in GOOD_REQUEST_BLOCK]
        self.assertEqual(RequestHead.fromLinkHeaders(block), _request())

    def test_optionsStar(self) -> None:
        """
        OPTIONS may have the path "*", and it round-trips.
        """
        head = _request(method=b"OPTIONS", path=b"*")
        self.assertEqual(RequestHead.fromLinkHeaders(head.toLinkHeaders()), head)

    def test_bytesPreserved(self) -> None:
        """
        Path, query, percent-escapes and obs-text are kept byte for byte.
        """
        path = b"/%7Efoo/../b%2Fc;x?q=1&q=%zz&\xc3\xa9=\"'|{}"
        head = _request(path=path)
        self.assertEqual(RequestHead.fromLinkHeaders(head.toLinkHeaders()).path, path)

    def test_headersCopied(self) -> None:
        """
        Changing the caller's list afterwards does not change the head.
        """
        headers = [(b"a", b"1")]
        head = _request(headers=headers)
        headers.append((b"b", b"2"))
        self.assertEqual(head.headers, [(b"a", b"1")])

    def test_frozen(self) -> None:
        """
        A head cannot be changed in place.
        """
        self.assertRaises(
            attrs.exceptions.FrozenInstanceError, setattr, _request(), "path", b"/"
        )

    def test_rejectMissingPseudo(self) -> None:
        """
        Each missing pseudo-header is refused, by name.
        """
        for i in range(4):
            block = GOOD_REQUEST_BLOCK[:i] + GOOD_REQUEST_BLOCK[i + 1 :]
            e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
            self.assertIn("missing", e.reason)
            self.assertIn(GOOD_REQUEST_BLOCK[i][0].decode(), e.reason)

    def test_rejectDuplicatePseudo(self) -> None:
        """
        Each duplicated pseudo-header is refused, even with the same value.
        """
        for i in range(4):
            block = [GOOD_REQUEST_BLOCK[i]] + GOOD_REQUEST_BLOCK
            e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
            self.assertIn("duplicate", e.reason)

    def test_rejectUnknownPseudo(self) -> None:
        """
        Unknown pseudo-headers, including the response's :status and
        uppercase variants, are refused.
        """
        for name in [b":status", b":protocol", b":Method", b":"]:
            block = [(name, b"x")] + GOOD_REQUEST_BLOCK
            e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
            self.assertIn("unknown pseudo-header", e.reason)

    def test_rejectPseudoAfterRegular(self) -> None:
        """
        A pseudo-header after a regular header is refused.
        """
        block = GOOD_REQUEST_BLOCK[:3] + [(b"accept", b"*/*")] + GOOD_REQUEST_BLOCK[3:4]
        e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
        self.assertIn("after regular", e.reason)

    def test_rejectUppercaseName(self) -> None:
        """
        A regular header name with an uppercase letter is refused.
        """
        block = GOOD_REQUEST_BLOCK + [(b"Accept", b"x")]
        e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
        self.assertIn("not lowercase", e.reason)

    def test_rejectInvalidName(self) -> None:
        """
        Regular header names that are not tokens are refused.
        """
        for name in [b"", b"a b", b"a\r\nb", b"a:b", b"\xc3\xa9", b"a\x00"]:
            block = GOOD_REQUEST_BLOCK + [(name, b"x")]
            e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
            self.assertIn("invalid header name", e.reason)

    def test_rejectInvalidValue(self) -> None:
        """
        Header values with CR, LF, NUL, controls or outer whitespace are
        refused.
        """
        for value in [b"a\r\nx-injected: 1", b"a\n", b"a\x00", b"\x01", b" a", b"a\t"]:
            block = GOOD_REQUEST_BLOCK + [(b"x-a", value)]
            e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
            self.assertIn("invalid value", e.reason)

    def test_rejectNotBytes(self) -> None:
        """
        Entries that are not pairs of bytes (str from a non-raw HPACK
        decoder, wrong arity) are refused cleanly.
        """
        for entry in [
            (":method", "GET"),
            (b"a", "b"),
            (b"a",),
            (b"a", b"b", b"c"),
            [b"a", b"b"],
            None,
        ]:
            for block in ([entry] + GOOD_REQUEST_BLOCK, GOOD_REQUEST_BLOCK + [entry]):
                e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
                self.assertIn("not a pair of bytes", e.reason)

    def test_rejectHostHeader(self) -> None:
        """
        A regular host header is refused: the host travels as :authority only.
        """
        block = GOOD_REQUEST_BLOCK + [(b"host", b"other.example")]
        e = self.assertRaises(BadMessage, RequestHead.fromLinkHeaders, block)
        self.assertIn(":authority", e.reason)

    def test_rejectMethod(self) -> None:
        """
        A method that is not a token is refused.
        """
        for method in [b"", b"GE T", b"GET\r\n", b"G(", b"\xc3\xa9"]:
            e = self.assertRaises(BadMessage, _request, method=method)
            self.assertIn(":method", e.reason)

    def test_rejectScheme(self) -> None:
        """
        A scheme other than http or https is refused.
        """
        for scheme in [b"", b"ftp", b"HTTP", b"https:"]:
            e = self.assertRaises(BadMessage, _request, scheme=scheme)
            self.assertIn(":scheme", e.reason)

    def test_rejectPath(self) -> None:
        """
        A path not starting with "/", with whitespace, controls or a fragment,
        or "*" with a method other than OPTIONS, is refused.
        """
        for path in [
            b"",
            b"a/b",
            b"http://x/",
            b"/a b",
            b"/a\r\n",
            b"/a\x00",
            b"/a\x7f",
            b"/a#frag",
            b"**",
        ]:
            e = self.assertRaises(BadMessage, _request, path=path)
            self.assertIn(":path", e.reason)
        e = self.assertRaises(BadMessage, _request, method=b"GET", path=b"*")
        self.assertIn("'*'", e.reason)

    def test_acceptAuthority(self) -> None:
        """
        Names, IPv4, bracketed IPv6, ports and RFC 3986 sub-delims are
        accepted.
        """
        for authority in [
            b"example.com",
            b"EXAMPLE.com:8080",
            b"192.0.2.1:80",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"a_b-c~d.e%41",
            b"host:",
        ]:
            self.assertEqual(_request(authority=authority).authority, authority)

    def test_rejectAuthority(self) -> None:
        """
        Characters not allowed in host[:port] are refused, as are userinfo,
        bad IPv6 literals and non-numeric ports.
        """
        for authority in [
            b"",
            b"user@example.com",
            b"exa mple.com",
            b"example.com/",
            b"example.com\r\n",
            b"example.com:8o",
            b"example.com:123456",
            b"example.com:80:80",
            b"[::1",
            b"[::g]",
            b"[1.2.3.4]",
            b"::1",
            b":80",
            b"\xc3\xa9.com",
            b"a%zz",
            b"a?b",
            b"a#b",
        ]:
            e = self.assertRaises(BadMessage, _request, authority=authority)
            self.assertIn(":authority", e.reason)

    def test_rejectNonBytesFields(self) -> None:
        """
        Pseudo-header fields given as str are refused with BadMessage.
        """
        e = self.assertRaises(BadMessage, _request, method="GET")
        self.assertIn("bytes", e.reason)

    @hypothesisSettings
    @given(requestHeads())
    def test_propertyRoundTrip(self, head: RequestHead) -> None:
        """
        fromLinkHeaders inverts toLinkHeaders for every valid head.
        """
        self.assertEqual(RequestHead.fromLinkHeaders(head.toLinkHeaders()), head)

    @hypothesisSettings
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([b":method", b":path", b":status", b"host", b"a", b"A"])
                | st.binary(max_size=6),
                st.sampled_from([b"GET", b"/", b"x", b"\r\n", b""])
                | st.binary(max_size=6),
            ),
            max_size=8,
        )
    )
    def test_propertyJunkGivesBadMessage(
        self, block: list[tuple[bytes, bytes]]
    ) -> None:
        """
        Arbitrary blocks either decode to a head that re-encodes to the same
        regular headers, or raise BadMessage: nothing else escapes.
        """
        try:
            head = RequestHead.fromLinkHeaders(block)
        except BadMessage:
            return
        self.assertEqual(
            head.toLinkHeaders()[4:], [h for h in block if h[0][:1] != b":"]
        )


GOOD_RESPONSE_BLOCK = [(b":status", b"200"), (b"content-type", b"text/html")]


class ResponseHeadTests(SynchronousTestCase):
    """
    Tests for L{ResponseHead}.
    """

    def test_toLinkHeaders(self) -> None:
        """
        :status comes first as three digits, then the headers.
        """
        head = ResponseHead(status=200, headers=[(b"content-type", b"text/html")])
        self.assertEqual(head.toLinkHeaders(), GOOD_RESPONSE_BLOCK)

    def test_fromLinkHeaders(self) -> None:
        """
        A well-formed block decodes to the head that encodes it.
        """
        self.assertEqual(
            ResponseHead.fromLinkHeaders(GOOD_RESPONSE_BLOCK),
            ResponseHead(200, [(b"content-type", b"text/html")]),
        )

    def test_statusBounds(self) -> None:
        """
        Status 200 and 599 are accepted; interim ones (100-199), 99, 600,
        bools and non-ints are not.
        """
        self.assertEqual(ResponseHead(200, []).status, 200)
        self.assertEqual(ResponseHead(599, []).status, 599)
        for status in [
            100,
            101,
            103,
            199,
            99,
            600,
            0,
            -200,
            True,
            200.0,
            "200",
            b"200",
        ]:
            e = self.assertRaises(BadMessage, ResponseHead, status, [])
            self.assertIn(":status", e.reason)

    def test_rejectStatusText(self) -> None:
        """
        A :status that is not three digits from 200 to 599 is refused: an
        interim (1xx) head is never taken for the final one.
        """
        for status in [
            b"100",
            b"103",
            b"199",
            b"",
            b"20",
            b"2000",
            b"099",
            b"600",
            b"20a",
            b" 200",
            b"+20",
            b"\xd9\xa0\xd9\xa0\xd9\xa0",
        ]:
            block = [(b":status", status)]
            e = self.assertRaises(BadMessage, ResponseHead.fromLinkHeaders, block)
            self.assertIn(":status", e.reason)

    def test_rejectPseudo(self) -> None:
        """
        A missing, duplicate, unknown or late pseudo-header is refused.
        """
        cases = [
            ([(b"a", b"b")], "missing"),
            ([(b":status", b"200"), (b":status", b"200")], "duplicate"),
            ([(b":path", b"/"), (b":status", b"200")], "unknown"),
            ([(b"a", b"b"), (b":status", b"200")], "after regular"),
        ]
        for block, reason in cases:
            e = self.assertRaises(BadMessage, ResponseHead.fromLinkHeaders, block)
            self.assertIn(reason, e.reason)

    def test_rejectRegular(self) -> None:
        """
        Uppercase or invalid names and invalid values are refused.
        """
        for header in [(b"Server", b"x"), (b"a b", b"x"), (b"set-cookie", b"a\r\nb")]:
            self.assertRaises(BadMessage, ResponseHead, 200, [header])
            block = [(b":status", b"200"), header]
            self.assertRaises(BadMessage, ResponseHead.fromLinkHeaders, block)

    def test_hostAllowed(self) -> None:
        """
        Unlike a request, a response may carry any end-to-end header name.
        """
        self.assertEqual(
            ResponseHead(200, [(b"host", b"x")]).headers, [(b"host", b"x")]
        )

    @hypothesisSettings
    @given(responseHeads)
    def test_propertyRoundTrip(self, head: ResponseHead) -> None:
        """
        fromLinkHeaders inverts toLinkHeaders for every valid head.
        """
        self.assertEqual(ResponseHead.fromLinkHeaders(head.toLinkHeaders()), head)


class ControlTests(SynchronousTestCase):
    """
    Tests for L{splitControl} and L{stripControl}.
    """

    def test_names(self) -> None:
        """
        The control header constants share the reserved prefix.
        """
        for name in [CONTROL_BASE, CONTROL_BODY, CONTROL_DIGEST]:
            self.assertTrue(name.startswith(b"railgun-"))

    def test_split(self) -> None:
        """
        Control headers go into the dict by full name; the rest keep their
        order.
        """
        headers = [
            (b"a", b"1"),
            (CONTROL_BASE, b"abc"),
            (b"b", b"2"),
            (b"Railgun-Body", b"delta"),
            (b"railgun", b"diag is not control"),
        ]
        self.assertEqual(
            splitControl(headers),
            (
                [(b"a", b"1"), (b"b", b"2"), (b"railgun", b"diag is not control")],
                {CONTROL_BASE: b"abc", CONTROL_BODY: b"delta"},
            ),
        )

    def test_splitDuplicate(self) -> None:
        """
        A control header given twice is refused.
        """
        headers = [(CONTROL_BASE, b"a"), (b"RAILGUN-BASE", b"b")]
        e = self.assertRaises(BadMessage, splitControl, headers)
        self.assertIn("duplicate control", e.reason)

    def test_strip(self) -> None:
        """
        Every railgun-* header goes, whatever its case; look-alikes stay.
        """
        headers = [
            (b"railgun-base", b"x"),
            (b"RailGun-Anything", b"y"),
            (b"railgun-", b"z"),
            (b"railgun", b"keep"),
            (b"x-railgun-base", b"keep"),
            (b"railgunbase", b"keep"),
        ]
        self.assertEqual(
            stripControl(headers),
            [
                (b"railgun", b"keep"),
                (b"x-railgun-base", b"keep"),
                (b"railgunbase", b"keep"),
            ],
        )

    @hypothesisSettings
    @given(
        st.lists(
            st.tuples(names | names.map(lambda n: b"railgun-" + n), values),
            max_size=8,
            unique_by=lambda h: h[0],
        )
    )
    def test_propertySplitPartitions(self, headers: list[tuple[bytes, bytes]]) -> None:
        """
        splitControl's two parts together are exactly the input, and its
        end-to-end part is what stripControl keeps.
        """
        endToEnd, control = splitControl(headers)
        self.assertEqual(endToEnd, stripControl(headers))
        self.assertEqual(sorted(endToEnd + list(control.items())), sorted(headers))
        self.assertTrue(all(k.startswith(b"railgun-") for k in control))


class ResponseHasBodyTests(SynchronousTestCase):
    """
    Tests for L{responseHasBody}.
    """

    def test_noBody(self) -> None:
        """
        HEAD responses, 1xx, 204 and 304 have no body.
        """
        for status in [200, 404, 500]:
            self.assertFalse(responseHasBody(b"HEAD", status))
        for status in [100, 101, 103, 199, 204, 304]:
            self.assertFalse(responseHasBody(b"GET", status))

    def test_body(self) -> None:
        """
        Every other response to any other method has a body.
        """
        for method in [b"GET", b"POST", b"head", b"OPTIONS"]:
            for status in [200, 201, 203, 205, 206, 301, 302, 303, 307, 400, 599]:
                self.assertTrue(responseHasBody(method, status))

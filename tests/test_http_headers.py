"""
Tests for L{railgun.http.headers}.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.http.headers import (
    HOP_BY_HOP,
    addForwarding,
    fromRawHeaders,
    headerListSize,
    stripHopByHop,
    validHeaderName,
    validHeaderValue,
)

# Deterministic and without a .hypothesis directory in the tree.
hypothesisSettings = settings(derandomize=True, database=None, deadline=None)

TCHARS = (
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
names = st.binary(min_size=1, max_size=20).filter(
    lambda b: all(c in TCHARS for c in b)
) | st.sampled_from([b"content-type", b"x-a", b"connection", b"te", b"cookie"])
values = st.binary(max_size=30)
headerLists = st.lists(st.tuples(names, values), max_size=10)


class StripHopByHopTests(SynchronousTestCase):
    """
    Tests for L{stripHopByHop}.
    """

    def test_hopByHopList(self) -> None:
        """
        HOP_BY_HOP holds exactly the RFC 9110 7.6.1 names plus keep-alive and
        proxy-connection.
        """
        self.assertEqual(
            HOP_BY_HOP,
            {
                b"connection",
                b"keep-alive",
                b"proxy-connection",
                b"te",
                b"trailer",
                b"transfer-encoding",
                b"upgrade",
                b"proxy-authenticate",
                b"proxy-authorization",
            },
        )

    def test_removesEachHopByHop(self) -> None:
        """
        Every hop-by-hop header is removed; others keep their order.
        """
        headers = [(b"a", b"1")]
        for name in sorted(HOP_BY_HOP):
            headers.append((name, b"x"))
        headers.append((b"b", b"2"))
        headers.append((b"a", b"3"))
        self.assertEqual(
            stripHopByHop(headers), [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
        )

    def test_connectionTokens(self) -> None:
        """
        Headers named by Connection tokens go too, matched case-insensitively
        with whitespace and empty list elements tolerated, across several
        Connection headers.
        """
        headers = [
            (b"connection", b" X-Foo ,\t,close,, x-bar\t"),
            (b"x-foo", b"1"),
            (b"x-bar", b"2"),
            (b"x-baz", b"3"),
            (b"Connection", b"X-BAZ"),
            (b"x-keep", b"4"),
            (b"close", b"5"),
        ]
        self.assertEqual(stripHopByHop(headers), [(b"x-keep", b"4")])

    def test_mixedCaseNames(self) -> None:
        """
        Non-lowercase hop-by-hop names are removed as well.
        """
        self.assertEqual(
            stripHopByHop([(b"Transfer-Encoding", b"chunked"), (b"Host", b"h")]),
            [(b"Host", b"h")],
        )

    def test_doesNotMutate(self) -> None:
        """
        The argument is left unchanged.
        """
        headers = [(b"te", b"trailers"), (b"a", b"b")]
        stripHopByHop(headers)
        self.assertEqual(headers, [(b"te", b"trailers"), (b"a", b"b")])

    def test_acceptsIterator(self) -> None:
        """
        A one-shot iterator works: Connection is read before filtering.
        """
        headers = iter([(b"x-a", b"1"), (b"connection", b"x-a"), (b"x-b", b"2")])
        self.assertEqual(stripHopByHop(headers), [(b"x-b", b"2")])

    @hypothesisSettings
    @given(headerLists)
    def test_propertyResultIsEndToEnd(self, headers: list[tuple[bytes, bytes]]) -> None:
        """
        The result is the input minus exactly the hop-by-hop and
        Connection-named headers, and stripping again changes nothing.
        """
        result = stripHopByHop(headers)
        named = {
            t.strip(b" \t").lower()
            for n, v in headers
            if n.lower() == b"connection"
            for t in v.split(b",")
        }
        expected = [
            (n, v)
            for n, v in headers
            if n.lower() not in HOP_BY_HOP and n.lower() not in named
        ]
        self.assertEqual(result, expected)
        self.assertEqual(stripHopByHop(result), result)


class AddForwardingTests(SynchronousTestCase):
    """
    Tests for L{addForwarding}.
    """

    def test_fresh(self) -> None:
        """
        Without existing forwarding headers, one of each is appended.
        """
        result = addForwarding(
            [(b"accept", b"*/*")],
            clientAddress="192.0.2.7",
            host=b"example.com",
            proto="https",
        )
        self.assertEqual(
            result,
            [
                (b"accept", b"*/*"),
                (b"x-forwarded-for", b"192.0.2.7"),
                (b"forwarded", b"for=192.0.2.7;host=example.com;proto=https"),
                (b"via", b"1.1 railgun"),
            ],
        )

    def test_appendsToExisting(self) -> None:
        """
        Existing values are joined with ", " in place, several headers of one
        name become one, and empty ones are dropped from the join.
        """
        result = addForwarding(
            [
                (b"x-forwarded-for", b"203.0.113.1"),
                (b"via", b"1.0 fred"),
                (b"forwarded", b"for=203.0.113.1"),
                (b"a", b"b"),
                (b"X-Forwarded-For", b"198.51.100.2"),
                (b"x-forwarded-for", b""),
            ],
            clientAddress="192.0.2.7",
            host=None,
            proto="http",
            via=b"1.1 edge-1",
        )
        self.assertEqual(
            result,
            [
                (b"x-forwarded-for", b"203.0.113.1, 198.51.100.2, 192.0.2.7"),
                (b"via", b"1.0 fred, 1.1 edge-1"),
                (b"forwarded", b"for=203.0.113.1, for=192.0.2.7;proto=http"),
                (b"a", b"b"),
            ],
        )

    def test_ipv6(self) -> None:
        """
        An IPv6 client is bare in X-Forwarded-For and quoted, bracketed and
        canonical in Forwarded.
        """
        result = addForwarding(
            [], clientAddress="2001:DB8:0:0::1", host=None, proto="http"
        )
        self.assertIn((b"x-forwarded-for", b"2001:db8::1"), result)
        self.assertIn((b"forwarded", b'for="[2001:db8::1]";proto=http'), result)

    def test_ipv4Mapped(self) -> None:
        """
        An IPv4-mapped IPv6 address (from a dual-stack socket) is written as
        IPv4.
        """
        result = addForwarding(
            [], clientAddress="::ffff:192.0.2.9", host=None, proto="http"
        )
        self.assertIn((b"x-forwarded-for", b"192.0.2.9"), result)
        self.assertIn((b"forwarded", b"for=192.0.2.9;proto=http"), result)

    def test_zoneDropped(self) -> None:
        """
        An IPv6 zone id is left out: it means nothing to the origin.
        """
        result = addForwarding(
            [], clientAddress="fe80::1%eth0", host=None, proto="http"
        )
        self.assertIn((b"forwarded", b'for="[fe80::1]";proto=http'), result)

    def test_unknownAndObfuscated(self) -> None:
        """
        RFC 7239's "unknown" and obfuscated identifiers are accepted as is.
        """
        for node in ["unknown", "_hidden", "_a.b-c_1"]:
            result = addForwarding([], clientAddress=node, host=None, proto="http")
            self.assertIn((b"x-forwarded-for", node.encode()), result)
            self.assertIn((b"forwarded", f"for={node};proto=http".encode()), result)

    def test_hostQuoted(self) -> None:
        """
        A host that is not a token (a port, an IPv6 literal, a quote) is
        written as a quoted-string with escapes.
        """
        cases = [
            (b"example.com:8080", b'host="example.com:8080"'),
            (b"[::1]:80", b'host="[::1]:80"'),
            (b'a"b\\c', b'host="a\\"b\\\\c"'),
            (b"", b'host=""'),
        ]
        for host, element in cases:
            result = addForwarding(
                [], clientAddress="192.0.2.1", host=host, proto="http"
            )
            self.assertIn(
                (b"forwarded", b"for=192.0.2.1;" + element + b";proto=http"), result
            )

    def test_protoLowercased(self) -> None:
        """
        The proto parameter is written in lowercase.
        """
        result = addForwarding([], clientAddress="192.0.2.1", host=None, proto="HTTPS")
        self.assertIn((b"forwarded", b"for=192.0.2.1;proto=https"), result)

    def test_rejections(self) -> None:
        """
        A bad client address, host, proto or via raises ValueError.
        """
        good: dict[str, object] = dict(
            clientAddress="192.0.2.1", host=b"h", proto="http"
        )
        bad: list[dict[str, object]] = [
            dict(clientAddress="not an address"),
            dict(clientAddress="192.0.2.1:80"),
            dict(clientAddress=""),
            dict(host=b"a\r\nb"),
            dict(host=b"a\x00"),
            dict(proto="ht tp"),
            dict(proto=""),
            dict(proto="1http"),
            dict(via=b""),
            dict(via=b"1.1 x\r\nInjected: yes"),
        ]
        for change in bad:
            kwargs = {**good, **change}
            with self.subTest(change=change):
                self.assertRaises(
                    ValueError,
                    addForwarding,
                    [],
                    **kwargs,  # type: ignore[arg-type]
                )

    def test_doesNotMutate(self) -> None:
        """
        The argument is left unchanged.
        """
        headers = [(b"via", b"1.0 a")]
        addForwarding(headers, clientAddress="192.0.2.1", host=None, proto="http")
        self.assertEqual(headers, [(b"via", b"1.0 a")])

    @hypothesisSettings
    @given(
        headerLists,
        st.ip_addresses().map(str),
        st.one_of(st.none(), st.binary(max_size=20).filter(validHeaderValue)),
    )
    def test_propertyValidOutput(
        self, headers: list[tuple[bytes, bytes]], address: str, host: bytes | None
    ) -> None:
        """
        Other headers are kept in order, each forwarding header appears once,
        the new elements come last, and the added values are valid fields.
        """
        result = addForwarding(headers, clientAddress=address, host=host, proto="https")
        forwarding = {b"x-forwarded-for", b"forwarded", b"via"}
        self.assertEqual(
            [h for h in result if h[0] not in forwarding],
            [h for h in headers if h[0].lower() not in forwarding],
        )
        byName: dict[bytes, bytes] = {}
        for name, value in result:
            if name in forwarding:
                self.assertNotIn(name, byName)
                byName[name] = value
        self.assertEqual(set(byName), forwarding)
        self.assertTrue(byName[b"via"].endswith(b"1.1 railgun"))
        self.assertTrue(byName[b"forwarded"].endswith(b";proto=https"))
        self.assertTrue(validHeaderValue(byName[b"forwarded"].rpartition(b", ")[2]))
        self.assertTrue(
            validHeaderValue(byName[b"x-forwarded-for"].rpartition(b", ")[2])
        )


class ValidationTests(SynchronousTestCase):
    """
    Tests for L{validHeaderName}, L{validHeaderValue} and L{headerListSize}.
    """

    def test_names(self) -> None:
        """
        Tokens are valid names; empty names, separators, spaces, controls,
        colons and non-ASCII are not.
        """
        for name in [b"a", b"content-type", b"X-Foo", TCHARS]:
            self.assertTrue(validHeaderName(name), name)
        for name in [
            b"",
            b"a b",
            b"a:b",
            b":path",
            b"a\r",
            b"a\n",
            b"a\x00",
            b"(a)",
            b'a"',
            b"a\x7f",
            b"\xc3\xa9",
            b"a/b",
            b"a@b",
        ]:
            self.assertFalse(validHeaderName(name), name)

    def test_values(self) -> None:
        """
        Visible characters, obs-text and inner SP/HTAB are valid; CR, LF,
        NUL, other controls, DEL and leading/trailing whitespace are not.
        """
        for value in [b"", b"a", b"a b\tc", b"\x80\xff", b"!~", b"a  b"]:
            self.assertTrue(validHeaderValue(value), value)
        for value in [
            b"a\r\nb",
            b"a\rb",
            b"a\nb",
            b"a\x00b",
            b"a\x01",
            b"\x1f",
            b"a\x7fb",
            b" a",
            b"a ",
            b"\ta",
            b"a\t",
            b" ",
        ]:
            self.assertFalse(validHeaderValue(value), value)

    @hypothesisSettings
    @given(st.binary(max_size=40) | st.binary(max_size=40).map(lambda b: b.strip()))
    def test_propertyValueMatchesGrammar(self, value: bytes) -> None:
        """
        A value is valid exactly when every byte is HTAB, SP, VCHAR or
        obs-text and it neither starts nor ends with whitespace; so a valid
        value never holds CR, LF or NUL.
        """
        allowed = set(b"\t ") | set(range(0x21, 0x7F)) | set(range(0x80, 0x100))
        expected = all(c in allowed for c in value) and (
            not value or (value[0] not in b" \t" and value[-1] not in b" \t")
        )
        self.assertEqual(validHeaderValue(value), expected)
        if expected:
            self.assertFalse(set(value) & set(b"\r\n\x00"))

    def test_headerListSize(self) -> None:
        """
        The size is name + value + 32 per entry, as HTTP/2 counts.
        """
        self.assertEqual(headerListSize([]), 0)
        self.assertEqual(
            headerListSize([(b"ab", b"cde"), (b"f", b"")]), 5 + 32 + 1 + 32
        )


class FromRawHeadersTests(SynchronousTestCase):
    """
    Tests for L{fromRawHeaders}.
    """

    def test_twistedHeaders(self) -> None:
        """
        Twisted's grouped, capitalized headers become a flat lowercase list,
        each name's values in order.
        """
        from twisted.web.http_headers import Headers

        headers = Headers()
        headers.addRawHeader(b"X-Foo", b"1")
        headers.addRawHeader(b"content-type", b"text/html")
        headers.addRawHeader(b"x-foo", b"2")
        self.assertEqual(
            fromRawHeaders(headers.getAllRawHeaders()),
            [(b"x-foo", b"1"), (b"x-foo", b"2"), (b"content-type", b"text/html")],
        )

    def test_empty(self) -> None:
        """
        No headers, or a name without values, give no entries.
        """
        self.assertEqual(fromRawHeaders([]), [])
        self.assertEqual(fromRawHeaders([(b"A", [])]), [])

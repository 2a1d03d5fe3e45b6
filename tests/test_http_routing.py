"""
Tests for L{railgun.http.routing}.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.http.routing import (
    DEFAULT_LINK_PORT,
    BadHost,
    HostMap,
    LinkAddress,
    OriginTarget,
    normalizeHost,
    parseLinkAddress,
    parseOriginURL,
)

hypothesisSettings = settings(derandomize=True, database=None, deadline=None)

labels = st.from_regex(r"[a-zA-Z0-9_\-]{1,10}", fullmatch=True)
hostNames = st.lists(labels, min_size=1, max_size=5).map(".".join)


class NormalizeHostTests(SynchronousTestCase):
    """
    Tests for L{normalizeHost}.
    """

    def test_names(self) -> None:
        """
        Names are lowercased and lose their port and trailing dot.
        """
        cases = {
            b"Example.COM": "example.com",
            b"example.com:8080": "example.com",
            b"example.com.": "example.com",
            b"example.com.:443": "example.com",
            b"example.com:": "example.com",
            b"localhost": "localhost",
            b"_dmarc.ex-ample.com": "_dmarc.ex-ample.com",
            b"192.0.2.1:80": "192.0.2.1",
            b"a" * 63 + b".com": "a" * 63 + ".com",
        }
        for authority, host in cases.items():
            self.assertEqual(normalizeHost(authority), host)

    def test_ipv6(self) -> None:
        """
        A bracketed IPv6 literal, with or without port, gives its canonical
        form without brackets.
        """
        cases = {
            b"[::1]": "::1",
            b"[::1]:8080": "::1",
            b"[::1]:": "::1",
            b"[2001:DB8:0:0:0:0:0:1]:443": "2001:db8::1",
            b"[::ffff:192.0.2.1]": "::ffff:c000:201",
        }
        for authority, host in cases.items():
            self.assertEqual(normalizeHost(authority), host)

    def test_junk(self) -> None:
        """
        Junk raises BadHost (a ValueError).
        """
        for authority in [
            b"",
            b".",
            b":80",
            b"example..com",
            b".example.com",
            b"exa mple.com",
            b"example.com/",
            b"user@example.com",
            b"example.com:http",
            b"example.com:0",
            b"example.com:65536",
            b"example.com:123456",
            b"example.com:80:80",
            b"::1",
            b"[::1",
            b"[::1]x",
            b"[::1]:99999",
            b"[fe80::1%eth0]",
            b"[example.com]",
            b"\xc3\xa9.com",
            b"a\r\n.com",
            b"a\x00",
            b"*.example.com",
            b"a" * 64 + b".com",
            b".".join([b"a" * 60] * 5),
            b"a" * 100_000,
        ]:
            with self.subTest(authority=authority):
                self.assertRaises(BadHost, normalizeHost, authority)
        self.assertTrue(issubclass(BadHost, ValueError))

    @hypothesisSettings
    @given(hostNames, st.one_of(st.none(), st.integers(1, 65535)), st.booleans())
    def test_propertyNames(self, name: str, port: int | None, dot: bool) -> None:
        """
        Any valid name with any port and optional trailing dot normalizes to
        its lowercase self, and normalizing is idempotent.
        """
        authority = name + ("." if dot else "") + ("" if port is None else f":{port}")
        host = normalizeHost(authority.encode())
        self.assertEqual(host, name.lower())
        self.assertEqual(normalizeHost(host.encode()), host)

    @hypothesisSettings
    @given(st.binary(max_size=30))
    def test_propertyOnlyBadHost(self, authority: bytes) -> None:
        """
        Arbitrary bytes either normalize to printable lowercase ASCII or raise
        BadHost; nothing else escapes.
        """
        try:
            host = normalizeHost(authority)
        except BadHost:
            return
        self.assertTrue(host.isascii() and host.isprintable() and host == host.lower())
        self.assertNotIn(" ", host)


class HostMapTests(SynchronousTestCase):
    """
    Tests for L{HostMap}.
    """

    def test_specificity(self) -> None:
        """
        Exact beats the longest wildcard, which beats shorter ones and "*".
        """
        hostMap = HostMap.parse(
            [
                "*=catch-all",
                "*.example.com=wild",
                "*.deep.example.com=deeper",
                "www.example.com=exact",
                "deep.example.com=exact-deep",
            ],
            str,
        )
        cases = {
            "www.example.com": "exact",
            "api.example.com": "wild",
            "a.b.c.example.com": "wild",
            "deep.example.com": "exact-deep",
            "x.deep.example.com": "deeper",
            "x.y.deep.example.com": "deeper",
            "example.com": "catch-all",
            "example.org": "catch-all",
            "notexample.com": "catch-all",
        }
        for host, value in cases.items():
            self.assertEqual(hostMap.lookup(host), value, host)

    def test_wildcardNotBare(self) -> None:
        """
        A wildcard matches sub-domains at any depth but not the bare domain,
        nor a name merely ending with the same letters.
        """
        hostMap = HostMap.parse(["*.example.com=1"], int)
        self.assertEqual(hostMap.lookup("a.example.com"), 1)
        self.assertEqual(hostMap.lookup("a.b.example.com"), 1)
        self.assertIsNone(hostMap.lookup("example.com"))
        self.assertIsNone(hostMap.lookup("badexample.com"))
        self.assertIsNone(hostMap.lookup("com"))

    def test_noMatch(self) -> None:
        """
        Without a catch-all, an unknown host gives None; an empty map too.
        """
        self.assertIsNone(HostMap.parse(["a.com=1"], int).lookup("b.com"))
        self.assertIsNone(HostMap.parse([], int).lookup("b.com"))

    def test_keysNormalized(self) -> None:
        """
        Keys are normalized as hosts are: case, trailing dot, IPv6 with or
        without brackets; spaces around key and value are ignored.
        """
        hostMap = HostMap.parse(
            [
                " WWW.Example.COM. = a ",
                "*.Example.ORG=b",
                "[2001:DB8::1]=c",
                "::1=d",
                "192.0.2.1=e",
            ],
            str,
        )
        self.assertEqual(hostMap.lookup("www.example.com"), "a")
        self.assertEqual(hostMap.lookup("x.example.org"), "b")
        self.assertEqual(hostMap.lookup(normalizeHost(b"[2001:db8:0::1]:80")), "c")
        self.assertEqual(hostMap.lookup(normalizeHost(b"[::1]")), "d")
        self.assertEqual(hostMap.lookup(normalizeHost(b"192.0.2.1:8080")), "e")

    def test_valueAfterFirstEquals(self) -> None:
        """
        The value is everything after the first "=".
        """
        hostMap = HostMap.parse(["a.com=x=y"], str)
        self.assertEqual(hostMap.lookup("a.com"), "x=y")

    def test_falsyValues(self) -> None:
        """
        Falsy values (0, "") are found like any other.
        """
        hostMap = HostMap.parse(["a.com=0", "*=0"], int)
        self.assertEqual(hostMap.lookup("a.com"), 0)
        self.assertEqual(hostMap.lookup("other"), 0)

    def test_duplicates(self) -> None:
        """
        A host given twice, even in another spelling, raises ValueError.
        """
        for entries in [
            ["a.com=1", "a.com=2"],
            ["a.com=1", "A.COM.=2"],
            ["*.a.com=1", "*.A.com=2"],
            ["*=1", "*=2"],
            ["[::1]=1", "::1=2"],
        ]:
            e = self.assertRaises(ValueError, HostMap.parse, entries, int)
            self.assertIn("duplicate", str(e))

    def test_exactAndWildcardSameDomain(self) -> None:
        """
        "a.com" and "*.a.com" are different keys.
        """
        hostMap = HostMap.parse(["a.com=1", "*.a.com=2"], int)
        self.assertEqual((hostMap.lookup("a.com"), hostMap.lookup("b.a.com")), (1, 2))

    def test_badEntries(self) -> None:
        """
        Malformed entries raise ValueError naming the entry.
        """
        for entry in [
            "a.com",
            "=1",
            " =1",
            "a.com:8080=1",
            "[::1]:80=1",
            "*.=1",
            "**=1",
            "*a.com=1",
            "a.*.com=1",
            "*.*.com=1",
            "a*=1",
            "*.[::1]=1",
            "exa mple.com=1",
            "a.com=notanint",
        ]:
            with self.subTest(entry=entry):
                e = self.assertRaises(ValueError, HostMap.parse, [entry], int)
                self.assertIn(repr(entry), str(e))

    def test_parseValueUsed(self) -> None:
        """
        Values go through parseValue, for example into link addresses.
        """
        hostMap = HostMap.parse(["*=origin.example:9000"], parseLinkAddress)
        self.assertEqual(hostMap.lookup("x"), LinkAddress("origin.example", 9000))

    @hypothesisSettings
    @given(st.lists(hostNames, min_size=1, max_size=6, unique_by=str.lower), hostNames)
    def test_propertyMostSpecific(self, domains: list[str], prefix: str) -> None:
        """
        For wildcards on nested domains, a name below them all finds the
        longest one, and each domain itself finds only a shorter one.
        """
        # Nest the domains: d0, d1.d0, d2.d1.d0, ...
        nested = []
        current = ""
        for d in domains:
            current = d if not current else f"{d}.{current}"
            nested.append(current.lower())
        hostMap = HostMap.parse([f"*.{d}={i}" for i, d in enumerate(nested)], int)
        self.assertEqual(
            hostMap.lookup(f"{prefix}.{nested[-1]}".lower()), len(nested) - 1
        )
        self.assertIsNone(hostMap.lookup(nested[0]))
        for i in range(1, len(nested)):
            self.assertEqual(hostMap.lookup(nested[i]), i - 1)


class OriginURLTests(SynchronousTestCase):
    """
    Tests for L{parseOriginURL} and L{OriginTarget}.
    """

    def test_parse(self) -> None:
        """
        Scheme, host, port and base path are read; ports default to 80 and
        443; the base path loses its trailing slashes.
        """
        cases = {
            "http://origin.example": OriginTarget("http", "origin.example", 80, ""),
            "https://origin.example/": OriginTarget("https", "origin.example", 443, ""),
            "HTTPS://Origin.Example:8443/app/": OriginTarget(
                "https", "origin.example", 8443, "/app"
            ),
            " http://192.0.2.1:8080/a/b// ": OriginTarget(
                "http", "192.0.2.1", 8080, "/a/b"
            ),
            "http://[::1]:8000": OriginTarget("http", "::1", 8000, ""),
            "http://[2001:DB8::1]/x": OriginTarget("http", "2001:db8::1", 80, "/x"),
            "https://o.example/A%20b/": OriginTarget(
                "https", "o.example", 443, "/A%20b"
            ),
        }
        for text, target in cases.items():
            self.assertEqual(parseOriginURL(text), target, text)

    def test_rejects(self) -> None:
        """
        Other schemes, userinfo, queries, fragments, bad hosts, ports and
        paths raise ValueError with a message naming the URL.
        """
        cases = [
            ("ftp://origin.example", "http"),
            ("origin.example", "http"),
            ("http:/origin.example", "http"),
            ("//origin.example", "http"),
            ("http://user:pw@origin.example", "userinfo"),
            ("http://user@origin.example/", "userinfo"),
            ("http://origin.example/?a=1", "query"),
            ("http://origin.example?a=1", "query"),
            ("http://origin.example/#top", "fragment"),
            ("http://", "no host"),
            ("http:///path", "no host"),
            ("http://origin.example:0", "port"),
            ("http://origin.example:65536", "port"),
            ("http://origin.example:", "port"),
            ("http://origin.example:x", "port"),
            ("http://::1/", "brackets"),
            ("http://[::1/", "IPv6"),
            ("http://exa mple/", "host"),
            ("http://origin.example/a b", "path"),
            ("http://origin.example/\xe9", "path"),
        ]
        for text, reason in cases:
            with self.subTest(text=text):
                e = self.assertRaises(ValueError, parseOriginURL, text)
                self.assertIn(reason, str(e))

    def test_urlFor(self) -> None:
        """
        The URL joins scheme, authority (default port left out), base path
        and request target.
        """
        cases = [
            ("http://o.example", b"/", b"http://o.example/"),
            ("https://o.example:443/app", b"/x?y=1", b"https://o.example/app/x?y=1"),
            ("http://o.example:8080/app/", b"/", b"http://o.example:8080/app/"),
            ("http://[::1]:80", b"/a", b"http://[::1]/a"),
            ("https://[::1]:8443/b", b"/a", b"https://[::1]:8443/b/a"),
        ]
        for text, path, url in cases:
            self.assertEqual(parseOriginURL(text).urlFor(path), url)

    def test_urlForPreservesBytes(self) -> None:
        """
        The request target is copied exactly: dot segments, double slashes,
        escapes, odd queries and obs-text are not touched.
        """
        target = parseOriginURL("http://o.example/base")
        path = b"//a/./../%2F%zz;p?q=%20&&x=\xc3\xa9|{}"
        self.assertEqual(target.urlFor(path), b"http://o.example/base" + path)

    def test_urlForRejects(self) -> None:
        """
        A target that is not origin-form, or would break or change the URL,
        raises ValueError.
        """
        target = parseOriginURL("http://o.example")
        for path in [
            b"",
            b"x",
            b"http://evil/",
            b"/a b",
            b"/a\r\n",
            b"/a#f",
            b"/\x00",
        ]:
            self.assertRaises(ValueError, target.urlFor, path)

    def test_urlForAsterisk(self) -> None:
        """
        The asterisk form (C{OPTIONS *}) has the origin's scheme and
        authority followed by C{*}, without the base path: what the origin
        Agent sends as C{OPTIONS *}.
        """
        target = parseOriginURL("https://o.example:8443/base")
        self.assertEqual(target.urlFor(b"*"), b"https://o.example:8443*")

    def test_constructorChecks(self) -> None:
        """
        An OriginTarget built directly is checked as a parsed one is.
        """
        for args in [
            ("ftp", "h", 21, ""),
            ("http", "h", 0, ""),
            ("http", "h", 70000, ""),
            ("http", "h", 80, "app"),
            ("http", "h", 80, "/app/"),
            ("http", "h", 80, "/a?b"),
        ]:
            self.assertRaises(ValueError, OriginTarget, *args)

    @hypothesisSettings
    @given(
        st.sampled_from(["http", "https"]),
        hostNames,
        st.one_of(st.none(), st.integers(1, 65535)),
        st.lists(labels, max_size=3).map(lambda ls: "".join("/" + s for s in ls)),
        st.binary(max_size=20).map(
            lambda b: b"/" + bytes(c for c in b if c > 0x20 and c not in (0x23, 0x7F))
        ),
    )
    def test_propertyURL(
        self, scheme: str, host: str, port: int | None, base: str, path: bytes
    ) -> None:
        """
        Parsed URLs keep their parts, and urlFor is the base URL plus the
        target byte for byte.
        """
        authority = host if port is None else f"{host}:{port}"
        target = parseOriginURL(f"{scheme}://{authority}{base}")
        default = 80 if scheme == "http" else 443
        self.assertEqual(
            target, OriginTarget(scheme, host.lower(), port or default, base)
        )
        expected = f"{scheme}://{host.lower()}"
        if port not in (None, default):
            expected += f":{port}"
        self.assertEqual(target.urlFor(path), (expected + base).encode() + path)


class LinkAddressTests(SynchronousTestCase):
    """
    Tests for L{parseLinkAddress}.
    """

    def test_parse(self) -> None:
        """
        Names, IPv4 and bracketed IPv6, with or without port, are read; the
        port defaults to 2408.
        """
        self.assertEqual(DEFAULT_LINK_PORT, 2408)
        cases = {
            "origin.example": LinkAddress("origin.example", 2408),
            "Origin.Example:9000": LinkAddress("origin.example", 9000),
            "192.0.2.1:2409": LinkAddress("192.0.2.1", 2409),
            "[::1]:2408": LinkAddress("::1", 2408),
            "[::1]": LinkAddress("::1", 2408),
            " host ": LinkAddress("host", 2408),
        }
        for text, address in cases.items():
            self.assertEqual(parseLinkAddress(text), address, text)

    def test_rejects(self) -> None:
        """
        Anything else raises ValueError naming the address.
        """
        for text in [
            "",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "::1",
            "::1:2408",
            "[::1]2408",
            "[::1]:",
            "host:1:2",
            "tcp:host:2408",
            "user@host",
            "host/path",
        ]:
            with self.subTest(text=text):
                e = self.assertRaises(ValueError, parseLinkAddress, text)
                self.assertIn(repr(text), str(e))

    def test_str(self) -> None:
        """
        A LinkAddress reads as it is written on the command line (what logs
        show), and that text parses back to it.
        """
        for address, text in [
            (LinkAddress("origin.example", 2408), "origin.example:2408"),
            (LinkAddress("::1", 9000), "[::1]:9000"),
        ]:
            self.assertEqual(str(address), text)
            self.assertEqual(parseLinkAddress(text), address)

    def test_unixPath(self) -> None:
        """
        A C{unix:} path, which C{--link-listen} accepts, is refused saying
        that an edge dials over TCP only.
        """
        e = self.assertRaises(ValueError, parseLinkAddress, "unix:/run/railgun.sock")
        self.assertEqual(
            str(e),
            "link address 'unix:/run/railgun.sock': an edge dials links over TCP only: give HOST[:PORT]",
        )

    def test_constructorChecks(self) -> None:
        """
        A LinkAddress built directly needs a host and a port in range.
        """
        self.assertRaises(ValueError, LinkAddress, "", 1)
        self.assertRaises(ValueError, LinkAddress, "h", 0)
        self.assertRaises(ValueError, LinkAddress, "h", 65536)


class MapValuesTests(SynchronousTestCase):
    """
    L{HostMap.mapValues}.
    """

    def test_sharedValues(self):
        """
        Hosts with equal values share one transformed value, made once, and
        lookups keep their specificity.
        """
        links = HostMap.parse(
            ["a.test=o:1", "b.test=o:1", "*.c.test=p:2", "*=o:1"], parseLinkAddress
        )
        calls = []

        def make(address):
            calls.append(address)
            return object()

        pools = links.mapValues(make)
        self.assertEqual(len(calls), 2)
        self.assertIs(pools.lookup("a.test"), pools.lookup("b.test"))
        self.assertIs(pools.lookup("a.test"), pools.lookup("z.test"))
        self.assertIsNot(pools.lookup("x.c.test"), pools.lookup("a.test"))

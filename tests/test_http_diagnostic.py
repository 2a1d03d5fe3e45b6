"""
Tests for L{railgun.http.diagnostic}.
"""

import math

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from railgun.http.diagnostic import (
    DIAGNOSTIC_MODES,
    PUBLIC_FLAGS,
    Flag,
    RailgunDiagnostic,
    discloses,
    formatDirect,
    formatHidden,
    linkRatio,
)
from railgun.http.headers import validHeaderValue

hypothesisSettings = settings(derandomize=True, database=None, deadline=None)

words = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12
)
numbers = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
flags = st.integers(0, 0xFFFF).map(Flag)
diagnostics = st.builds(
    RailgunDiagnostic,
    requestId=words,
    ratio=numbers,
    originSeconds=numbers,
    flags=flags,
    version=words,
)


def _diagnostic(**changes: object) -> RailgunDiagnostic:
    fields: dict[str, object] = dict(
        requestId="4fd1682b12",
        ratio=0.06,
        originSeconds=0.05057,
        flags=Flag.BASE_SENT | Flag.BASE_FOUND,
        version="5360",
    )
    fields.update(changes)
    return RailgunDiagnostic(**fields)  # type: ignore[arg-type]


class FlagTests(SynchronousTestCase):
    """
    Tests for L{Flag}.
    """

    def test_originalBits(self) -> None:
        """
        The bits the original had keep its values; the new ones follow.
        """
        self.assertEqual(
            {f.name: f.value for f in Flag},
            {
                "LINK_REUSED": 0x08,
                "BASE_SENT": 0x10,
                "BASE_FOUND": 0x20,
                "RETRIED": 0x80,
                "DELTA": 0x100,
                "SAME": 0x200,
                "COMPRESSED": 0x400,
            },
        )


class RailgunDiagnosticTests(SynchronousTestCase):
    """
    Tests for L{RailgunDiagnostic}.
    """

    def test_formatExample(self) -> None:
        """
        The original's example header is reproduced exactly.
        """
        diagnostic = _diagnostic(flags=Flag(0x31))
        self.assertEqual(diagnostic.format(), b"4fd1682b12 0.06 0.050570 0031 5360")

    def test_formatRounds(self) -> None:
        """
        The ratio has 2 decimals, the seconds 6, the flags 4 hex digits.
        """
        diagnostic = _diagnostic(
            ratio=12.3456,
            originSeconds=1.23456789,
            flags=Flag.DELTA | Flag.LINK_REUSED,
            version="0.1.0",
        )
        self.assertEqual(diagnostic.format(), b"4fd1682b12 12.35 1.234568 0108 0.1.0")
        self.assertEqual(
            _diagnostic(ratio=100, originSeconds=0).format()[11:26], b"100.00 0.000000"
        )

    def test_parseExample(self) -> None:
        """
        The original's example parses into its fields.
        """
        self.assertEqual(
            RailgunDiagnostic.parse(b"4fd1682b12 0.06 0.050570 0031 5360"),
            _diagnostic(flags=Flag(0x31), originSeconds=0.05057),
        )

    def test_parseUnknownBitsAndCase(self) -> None:
        """
        Unknown flag bits are kept, and uppercase hex is read.
        """
        diagnostic = RailgunDiagnostic.parse(b"x 1.00 2.000000 F208 v")
        self.assertEqual(int(diagnostic.flags), 0xF208)
        self.assertIn(Flag.SAME, diagnostic.flags)
        self.assertIn(Flag.LINK_REUSED, diagnostic.flags)
        self.assertNotIn(Flag.DELTA, diagnostic.flags)
        self.assertIsInstance(diagnostic.flags, Flag)

    def test_parseRejects(self) -> None:
        """
        Anything not exactly in the format raises ValueError.
        """
        for value in [
            b"",
            b"direct (all links are busy)",
            b"4fd1682b12 0.06 0.050570 0031",
            b"4fd1682b12 0.06 0.050570 0031 5360 extra",
            b"4fd1682b12  0.06 0.050570 0031 5360",
            b"4fd1682b12 0.6 0.050570 0031 5360",
            b"4fd1682b12 .06 0.050570 0031 5360",
            b"4fd1682b12 -0.06 0.050570 0031 5360",
            b"4fd1682b12 0.06 0.05057 0031 5360",
            b"4fd1682b12 0.06 0.050570 031 5360",
            b"4fd1682b12 0.06 0.050570 00031 5360",
            b"4fd1682b12 0.06 0.050570 00g1 5360",
            b"4fd1682b12 nan 0.050570 0031 5360",
            b"4fd1682b12 0.06 0.050570 0031 5360\r\n",
            b" 4fd1682b12 0.06 0.050570 0031 5360",
            b"4fd\xff 0.06 0.050570 0031 5360",
        ]:
            self.assertRaises(ValueError, RailgunDiagnostic.parse, value)

    def test_constructorRejects(self) -> None:
        """
        Fields that cannot be written in the format raise ValueError.
        """
        changeList: list[dict[str, object]] = [
            dict(requestId=""),
            dict(requestId="a b"),
            dict(requestId="a\r\n"),
            dict(requestId="\xe9"),
            dict(requestId=b"abc"),
            dict(version=""),
            dict(version="1 2"),
            dict(ratio=-0.01),
            dict(ratio=math.nan),
            dict(ratio=math.inf),
            dict(ratio="1"),
            dict(ratio=True),
            dict(originSeconds=-1.0),
            dict(originSeconds=math.nan),
            dict(flags=Flag(0x10000)),
            dict(flags=-1),
            dict(flags="0031"),
        ]
        for changes in changeList:
            with self.subTest(changes=changes):
                self.assertRaises(ValueError, _diagnostic, **changes)

    def test_frozen(self) -> None:
        """
        A diagnostic cannot be changed in place.
        """
        self.assertRaises(
            attrs.exceptions.FrozenInstanceError, setattr, _diagnostic(), "ratio", 1.0
        )

    @hypothesisSettings
    @given(diagnostics)
    def test_propertyRoundTrip(self, diagnostic: RailgunDiagnostic) -> None:
        """
        parse inverts format up to the written precision, the formatted value
        is a valid header value, and formatting is stable after one trip.
        """
        value = diagnostic.format()
        self.assertTrue(validHeaderValue(value))
        parsed = RailgunDiagnostic.parse(value)
        self.assertEqual(
            parsed,
            attrs.evolve(
                diagnostic,
                ratio=float(f"{diagnostic.ratio:.2f}"),
                originSeconds=float(f"{diagnostic.originSeconds:.6f}"),
            ),
        )
        self.assertEqual(parsed.format(), value)


class DirectTests(SynchronousTestCase):
    """
    Tests for L{formatDirect}.
    """

    def test_format(self) -> None:
        """
        The reason is written in parentheses after "direct".
        """
        self.assertEqual(
            formatDirect("all links are busy"), b"direct (all links are busy)"
        )
        self.assertEqual(formatDirect(""), b"direct ()")

    def test_rejects(self) -> None:
        """
        A reason with controls or non-ASCII raises ValueError.
        """
        for reason in ["a\r\nInjected: 1", "\x00", "caf\xe9", "\t"]:
            self.assertRaises(ValueError, formatDirect, reason)

    def test_notParsedAsDiagnostic(self) -> None:
        """
        A direct value is refused by RailgunDiagnostic.parse.
        """
        self.assertRaises(
            ValueError, RailgunDiagnostic.parse, formatDirect("internal error")
        )


class LinkRatioTests(SynchronousTestCase):
    """
    Tests for L{linkRatio}.
    """

    def test_percentage(self) -> None:
        """
        The ratio is the percentage of served bytes that crossed the link.
        """
        self.assertEqual(linkRatio(266, 92516), 100 * 266 / 92516)
        self.assertEqual(linkRatio(50, 100), 50.0)
        self.assertEqual(linkRatio(0, 100), 0.0)
        self.assertEqual(linkRatio(200, 100), 200.0)
        self.assertEqual(
            _diagnostic(ratio=linkRatio(266, 92516)).format().split()[1], b"0.29"
        )

    def test_nothingServed(self) -> None:
        """
        Nothing served gives 0.0, not a division error.
        """
        self.assertEqual(linkRatio(0, 0), 0.0)
        self.assertEqual(linkRatio(10, 0), 0.0)

    def test_negative(self) -> None:
        """
        Negative counts raise ValueError.
        """
        self.assertRaises(ValueError, linkRatio, -1, 10)
        self.assertRaises(ValueError, linkRatio, 1, -10)


class HiddenRatioTests(SynchronousTestCase):
    """
    Tests for L{discloses} and L{formatHidden}: the ratio and the base flags
    are hidden where they would compare one user's page with another's.
    """

    def test_discloses(self) -> None:
        """
        'full' always shows the ratio, 'off' never (no header), 'public'
        only for a shareable exchange whose request had no credentials.
        """
        for shareable in (True, False):
            for credentials in (True, False):
                self.assertTrue(discloses("full", shareable, credentials))
                self.assertFalse(discloses("off", shareable, credentials))
                self.assertEqual(
                    discloses("public", shareable, credentials),
                    shareable and not credentials,
                )
        self.assertEqual(DIAGNOSTIC_MODES, ("off", "public", "full"))

    def test_formatHidden(self) -> None:
        """
        A hidden diagnostic writes '-' for the ratio and keeps only the
        flags about the link; it parses back with a ratio of None.
        """
        value = formatHidden("4fd1682b12", 0.05057, 0xFFFF, "0100")
        self.assertEqual(value, b"4fd1682b12 - 0.050570 %04x 0100" % PUBLIC_FLAGS)
        parsed = RailgunDiagnostic.parse(value)
        self.assertIsNone(parsed.ratio)
        self.assertEqual(parsed.flags, Flag.LINK_REUSED | Flag.RETRIED)
        self.assertEqual(parsed.format(), value)

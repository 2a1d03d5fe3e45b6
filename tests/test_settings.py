"""
The settings schema (L{railgun.settings}): one declaration per setting gives
its flag and help, its TOML key and checks, and its configuration field.
"""

from __future__ import annotations

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from railgun.settings import (
    DURATION,
    SIZE,
    STRING,
    WHOLE,
    ConfigError,
    entries,
    flags,
    load,
    section,
    setting,
)


@frozen
class _Inner:
    """
    A section of a toy schema, held by both roles.
    """

    backlog: int = setting(
        "backlog",
        WHOLE,
        50,
        flag="backlog",
        between=(1, 4096),
        help="queued connections",
    )
    window: int = setting("window", SIZE, 1024, above=0, help="a window")


@frozen
class _Edge:
    """
    A toy role configuration.
    """

    name: str = setting("name", STRING, "x", flag="name", help="a name")
    wait: float = setting(
        "wait", DURATION, 5.0, flag="wait", alsoTop=True, above=0, help="seconds"
    )
    inner: _Inner = section("inner", _Inner)


@frozen
class _Origin:
    """
    Another toy role configuration.
    """

    wait: float = setting(
        "wait", DURATION, 7.0, flag="wait", alsoTop=True, above=0, help="seconds too"
    )
    inner: _Inner = section("inner", _Inner)


@frozen
class _Root:
    """
    A toy root, shaped like L{railgun.config.RailgunConfig}.
    """

    role: str = setting(
        "role", STRING, flag="role", top=True, choices=("edge", "origin", "both")
    )
    origin: _Origin | None = section(
        "origin", _Origin, ("origin", "both"), default=None
    )
    edge: _Edge | None = section("edge", _Edge, ("edge", "both"), default=None)


def _load(file=None, **given):
    given = {k.replace("_", "-"): v for k, v in given.items()}
    return load(_Root, file or {}, given, {})


class SchemaTests(SynchronousTestCase):
    """
    A setting declared once is a flag, a TOML key and a checked field.
    """

    def test_flagHelp(self):
        """
        Each flag's help names the roles it applies to and its default, per
        role where they differ; a setting held by both roles is one flag.
        """
        helps = {f.name: f.help for f in flags(list(entries(_Root)))}
        self.assertEqual(
            helps,
            {
                "role": "",
                "name": "edge: a name [default: x]",
                "wait": "origin: seconds too [default: 7]; edge: seconds [default: 5]",
                "backlog": "queued connections [default: 50]",
            },
        )

    def test_keys(self):
        """
        The schema lists each TOML key once, with its table.
        """
        self.assertEqual(
            [e.where for e in entries(_Root)],
            [
                "role",
                "origin.wait",
                "inner.backlog",
                "inner.window",
                "edge.name",
                "edge.wait",
            ],
        )

    def test_values(self):
        """
        A flag wins over the file, the file over the default; a role not run
        is not built; a key also read at the top level is overridden by the
        table's own.
        """
        root = _load(
            {
                "role": "edge",
                "wait": 2.0,
                "inner": {"backlog": 9},
                "edge": {"name": "f"},
            },
            name="flag",
        )
        self.assertIsNone(root.origin)
        self.assertEqual(root.edge, _Edge("flag", 2.0, _Inner(9, 1024)))
        root = _load({"role": "both", "wait": 2.0, "origin": {"wait": 3.0}})
        self.assertEqual((root.origin.wait, root.edge.wait), (3.0, 2.0))
        self.assertEqual(_load(role="both", wait=4.0).origin.wait, 4.0)

    def test_errors(self):
        """
        Unknown keys, wrong types and values out of range are errors naming
        the flag and the key.
        """
        for file, given, message in [
            ({"role": "edge", "color": 1}, {}, "unknown top-level key(s): color"),
            ({"role": "edge", "inner": {"x": 1}}, {}, "unknown key(s) in [inner]: x"),
            (
                {"role": "edge", "inner": 1},
                {},
                "inner must be a table ([inner]), not 1",
            ),
            (
                {"role": "edge", "inner": {"backlog": "9"}},
                {},
                "--backlog / inner.backlog must be a whole number, not '9'",
            ),
            (
                {"role": "edge"},
                {"backlog": 0},
                "--backlog / inner.backlog must be a whole number from 1 to 4096, not 0",
            ),
            (
                {"role": "edge", "inner": {"window": 0}},
                {},
                "inner.window must be a whole number > 0, not 0",
            ),
            (
                {"role": "edge", "wait": -1},
                {},
                "--wait / wait (or origin.wait, edge.wait) must be > 0, not -1",
            ),
            ({}, {"role": "sideways"}, "--role must be one of edge, origin, both"),
        ]:
            e = self.assertRaises(ConfigError, load, _Root, file, given, {})
            self.assertEqual(
                str(e).partition(" (got")[0], message.partition(" (got")[0]
            )

    def test_validators(self):
        """
        A configuration built by a program is checked against the same
        declaration, the error naming the field.
        """
        e = self.assertRaises(ConfigError, _Inner, backlog=5000)
        self.assertEqual(
            str(e), "backlog must be a whole number from 1 to 4096, not 5000"
        )

"""
The settings schema: each setting of Railgun is declared once, as a field of
a configuration class of L{railgun.config} whose metadata (a L{Setting})
says its flag, TOML table and key, kind, allowed range, the roles it applies
to and its help. Everything else is generated from those declarations:

  - the flags of C{twistd railgun} and their C{--help} (L{flagHelp},
    used by L{railgun.tap.Options});
  - the checks of the TOML file: unknown keys, types, ranges (L{load});
  - the frozen configuration objects handed to the services (L{load}), and
    the validators that check them when a program builds them itself.

To add a setting, add one field to the configuration class that carries it
(C{setting(...)}), use it in the service, and document it in
C{docs/configuration.md} (a test checks that the page and the schema name the
same flags and keys).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
from attrs import NOTHING, frozen

SETTING = "railgun.setting"
SECTION = "railgun.section"

ROLES = ("edge", "origin", "both")


class ConfigError(Exception):
    """
    A configuration value is missing, malformed or out of range; the message
    names the key and says what was expected.
    """


def parseNumber(text: str) -> float:
    """
    Parse a finite number (C{nan} and C{inf} are not settings).
    """
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parseSize(text: str) -> int:
    """
    Parse a byte size: C{1048576}, C{64k}, C{256m}, C{2g} (powers of 1024).
    """
    text = str(text).strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def showSize(value: int) -> str:
    """
    A byte size as C{--help} shows it: C{16k}, C{2g}, or bytes.
    """
    for suffix, unit in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if value >= unit and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


def _isString(value: Any) -> bool:
    return isinstance(value, str)


def _isNumber(value: Any) -> bool:
    # A bool is an int to Python; true is not a number of seconds.
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _isWhole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _isStrings(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


def _isHostMap(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


class _Missing:
    """
    No value: a setting not given.
    """

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@frozen
class Kind:
    """
    What kind of value a setting takes.

    @ivar name: the kind's name (as C{docs/configuration.md} says it).
    @ivar wanted: what a value in the file must be, for its error.
    @ivar flagWanted: what a flag's value must be, for its error.
    @ivar parse: a flag's text to a value; raises C{ValueError}.
    @ivar accepts: whether a value read from TOML has the right type.
    @ivar whole: whole numbers (their range errors say so).
    @ivar repeatable: a list, one element per repeated flag.
    @ivar switch: a flag without a value (a boolean).
    """

    name: str
    wanted: str
    flagWanted: str
    parse: Callable[[str], Any]
    accepts: Callable[[Any], bool]
    whole: bool = False
    repeatable: bool = False
    switch: bool = False


STRING = Kind("string", "a string", "a string", str, _isString)
ENDPOINT = Kind(
    "endpoint",
    "a string (a Twisted endpoint such as tcp:2408:interface=127.0.0.1)",
    "a string",
    str,
    _isString,
)
NUMBER = Kind("number", "a number", "a number", parseNumber, _isNumber)
DURATION = Kind("duration", "a number", "a number", parseNumber, _isNumber)
WHOLE = Kind(
    "whole number", "a whole number", "a whole number", int, _isWhole, whole=True
)
SIZE = Kind(
    "size",
    "a whole number of bytes (sizes in the file are plain integers, like 1048576: "
    "the k, m and g suffixes are for flags only)",
    "a size in bytes (1048576, 64k, 256m, 2g)",
    parseSize,
    _isWhole,
    whole=True,
)
BOOLEAN = Kind(
    "boolean",
    "true or false",
    "true or false",
    bool,
    lambda value: isinstance(value, bool),
    switch=True,
)
LIST = Kind(
    "list",
    "a list of strings, or one string",
    "a string",
    str,
    _isStrings,
    repeatable=True,
)
HOSTMAP = Kind(
    "host map",
    "a table of host = value, or a list of HOST=VALUE",
    "HOST=VALUE",
    str,
    _isHostMap,
    repeatable=True,
)
#: The link token: given as a string or a file (see L{Setting.also}).
TOKEN = Kind("token", "a string", "a string", str, _isString)


@frozen
class Setting:
    """
    The declaration of one setting: metadata of a configuration field.

    @ivar key: its TOML key.
    @ivar kind: its L{Kind}.
    @ivar help: one line for C{--help}, without the role or the default.
    @ivar flag: its command-line flag (without C{--}), or L{None} for a
        key of the file only.
    @ivar top: its key is at the top level of the file, not in the table
        of the configuration class that holds it.
    @ivar table: its key is in this table, not in the table of the
        configuration class that holds it.
    @ivar alsoTop: its key may also be set at the top level of the file,
        for every table that has it (the table's own value wins); its flag
        sets it in every table.
    @ivar roles: the roles it applies to (C{origin}, C{edge}, C{both}), when
        fewer than those of the class that holds it.
    @ivar wrongRole: when set, giving the setting to a role it does not
        apply to is an error, which this text explains.
    @ivar required: when set, the roles of the class need a value: the
        error says the role needs this text.
    @ivar above: values must be greater than this.
    @ivar atLeast: values must be at least this.
    @ivar between: values must be in this range (both ends allowed), or a
        function giving it (for ranges defined elsewhere, read lazily).
    @ivar rangeName: what a value in range is, in errors.
    @ivar choices: the values allowed.
    @ivar switchValue: the value a switch flag sets (L{False} for
        C{--no-...}).
    @ivar convert: turns the checked value into the field's value; raises
        L{ConfigError} naming the setting by the label it is given.
    @ivar check: a further check of a value, with the label to name it
        (run on every table's value, whichever roles run).
    @ivar bothDefault: the default under C{--role both}, when not the
        field's.
    @ivar defaultText: how C{--help} shows the default, when not the value.
    @ivar also: settings given instead of this one (the token's file).
    @ivar wanted: what a value in the file must be, for its error, when
        not what its kind says.
    @ivar resolve: computes the value from this setting's and its C{also}
        settings' values (keyed by TOML key; all from flags, if any flag of
        them is given), whether they came from flags, the environment and
        the role.
    """

    key: str
    kind: Kind
    help: str = ""
    flag: str | None = None
    top: bool = False
    table: str | None = None
    alsoTop: bool = False
    roles: tuple[str, ...] | None = None
    wrongRole: str | None = None
    required: str | None = None
    above: float | None = None
    atLeast: float | None = None
    between: tuple[int, int] | Callable[[], tuple[int, int]] | None = None
    rangeName: str = "a whole number"
    choices: tuple[str, ...] | None = None
    switchValue: Any = True
    convert: Callable[[Any, str], Any] | None = None
    check: Callable[[Any, str], None] | None = None
    bothDefault: Any = MISSING
    defaultText: str | None = None
    also: tuple[Setting, ...] = ()
    wanted: str | None = None
    resolve: Callable[[dict[str, Any], bool, Mapping[str, str], str], Any] | None = None

    def validate(self, value: Any, name: str) -> None:
        """
        Check that C{value} is in range.

        @param name: how the error names the setting.
        @raise ConfigError: naming it, when out of range.
        """
        if value is None:
            return
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{name} must be one of {', '.join(self.choices)} (got {value!r})"
            )
        whole = " a whole number" if self.kind.whole else ""
        ranged = (self.above, self.atLeast, self.between) != (None, None, None)
        if self.kind.whole and ranged and not _isWhole(value):
            raise ConfigError(f"{name} must be a whole number, not {value!r}")
        if self.above is not None and not value > self.above:
            raise ConfigError(f"{name} must be{whole} > {self.above:g}, not {value!r}")
        if self.atLeast is not None and not value >= self.atLeast:
            raise ConfigError(
                f"{name} must be{whole} >= {self.atLeast:g}, not {value!r}"
            )
        if self.between is not None:
            low, high = self.between() if callable(self.between) else self.between
            if not low <= value <= high:
                raise ConfigError(
                    f"{name} must be {self.rangeName} from {low} to {high}, not {value!r}"
                )

    def field(self, default: Any = NOTHING, **changes: Any) -> Any:
        """
        An attrs field declared by this setting, whose validator checks its
        range (naming the field, for programs that build configurations
        themselves).

        @param changes: attributes of the setting that differ for this
            field (say, its help in one role).
        """
        setting = attrs.evolve(self, **changes) if changes else self

        def validator(instance: object, attribute: Any, value: Any) -> None:
            setting.validate(value, attribute.name)

        return attrs.field(
            default=default, validator=validator, metadata={SETTING: setting}
        )


def setting(key: str, kind: Kind, default: Any = NOTHING, **details: Any) -> Any:
    """
    Declare a configuration field as a setting: C{Setting(key, kind,
    **details).field(default)}.
    """
    return Setting(key, kind, **details).field(default)


@frozen
class Section:
    """
    A configuration field holding a configuration class of its own, read
    from a table of the file.

    @ivar table: the table's name.
    @ivar cls: the class.
    @ivar roles: the roles for which it is built, when fewer than those of
        the class holding it.
    """

    table: str
    cls: type
    roles: tuple[str, ...] | None = None


def section(
    table: str, cls: type, roles: tuple[str, ...] | None = None, **kwargs: Any
) -> Any:
    """
    Declare a configuration field holding a configuration class read from
    C{[table]}.
    """
    if "default" not in kwargs:
        kwargs["factory"] = cls
    return attrs.field(metadata={SECTION: Section(table, cls, roles)}, **kwargs)


@frozen
class Entry:
    """
    One place of the schema: a setting as one configuration field holds it.

    @ivar setting: its declaration.
    @ivar table: its TOML table, or L{None} at the top level.
    @ivar roles: the roles it applies to.
    @ivar default: the field's default (or C{NOTHING}).
    """

    setting: Setting
    table: str | None
    roles: frozenset[str]
    default: Any

    @property
    def where(self) -> str:
        """
        Its TOML key, with its table: C{link.ping_interval}.
        """
        key = self.setting.key
        return key if self.table is None else f"{self.table}.{key}"


def entries(
    cls: type,
    table: str | None = None,
    roles: frozenset[str] = frozenset(("origin", "edge", "both")),
) -> Iterator[Entry]:
    """
    Every setting of configuration class C{cls} and of the sections it
    holds, each once per table (a section held by two classes, such as
    C{[link]}, is listed once, for the roles of both).
    """
    found: dict[tuple[str | None, str], Entry] = {}
    for entry in _walk(cls, table, roles):
        place = (entry.table, entry.setting.key)
        if place in found:
            old = found[place]
            entry = attrs.evolve(old, roles=old.roles | entry.roles)
        found[place] = entry
        for also in entry.setting.also:
            found[(entry.table, also.key)] = Entry(also, entry.table, entry.roles, None)
    yield from found.values()


def _tableOf(setting: Setting, table: str | None) -> str | None:
    if setting.top:
        return None
    return setting.table if setting.table is not None else table


def _walk(cls: type, table: str | None, roles: frozenset[str]) -> Iterator[Entry]:
    for attribute in attrs.fields(cls):
        held = attribute.metadata.get(SECTION)
        if held is not None:
            yield from _walk(
                held.cls,
                held.table,
                frozenset(held.roles) if held.roles is not None else roles,
            )
            continue
        declared = attribute.metadata.get(SETTING)
        if declared is not None:
            yield Entry(
                declared,
                _tableOf(declared, table),
                frozenset(declared.roles) if declared.roles is not None else roles,
                attribute.default,
            )


def label(entry: Entry, schema: list[Entry]) -> str:
    """
    How an error names a setting: C{--ping-interval / link.ping_interval};
    the key alone when no flag sets it; a key also read at the top level
    with the tables that have it: C{--connect-timeout / connect_timeout (or
    origin.connect_timeout, edge.connect_timeout)}.
    """
    setting = entry.setting
    where = entry.where
    if setting.alsoTop:
        tables = [
            other.where
            for other in schema
            if other.setting.key == setting.key and other.setting.alsoTop
        ]
        where = f"{setting.key} (or {', '.join(tables)})"
    return f"--{setting.flag} / {where}" if setting.flag else where


def tables(schema: list[Entry]) -> list[str]:
    """
    The names of the file's tables, in the order the schema declares them.
    """
    return list(dict.fromkeys(e.table for e in schema if e.table is not None))


def topKeys(schema: list[Entry]) -> set[str]:
    """
    The keys allowed at the top level of the file.
    """
    return {
        e.setting.key for e in schema if e.table is None or e.setting.alsoTop
    } | set(tables(schema))


# --help


def _roleNote(roles: frozenset[str]) -> str:
    if roles == {"origin"} or roles == {"origin", "both"}:
        return "origin: "
    if roles == {"edge"} or roles == {"edge", "both"}:
        return "edge: "
    if roles == {"both"}:
        return "both: "
    return ""


def _showDefault(entry: Entry) -> str:
    setting = entry.setting
    if setting.defaultText is not None:
        return f" [default: {setting.defaultText}]"
    default = entry.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return ""
    if default is NOTHING or default is None or setting.kind.repeatable:
        return ""
    if setting.kind.switch:
        return ""
    if setting.kind is SIZE:
        return f" [default: {showSize(default)}]"
    if isinstance(default, float):
        return f" [default: {default:g}]"
    return f" [default: {default}]"


@frozen
class Flag:
    """
    One flag of the command line, generated from the settings it sets.

    @ivar name: the flag, without C{--}.
    @ivar kind: the kind of value it takes.
    @ivar help: its C{--help} text.
    @ivar entries: the settings it sets (one per table).
    """

    name: str
    kind: Kind
    help: str
    entries: tuple[Entry, ...]


def flags(schema: list[Entry]) -> list[Flag]:
    """
    The flags the schema declares, each with its help: the roles it applies
    to and its default, one per role where they differ (C{origin: ...
    [default: 30]; edge: ... [default: 60]}).
    """
    byFlag: dict[str, list[Entry]] = {}
    for entry in schema:
        if entry.setting.flag is not None:
            byFlag.setdefault(entry.setting.flag, []).append(entry)
    result = []
    for name, found in byFlag.items():
        texts = {(e.setting.help, _showDefault(e)) for e in found}
        if len(texts) == 1:
            roles = frozenset().union(*(e.roles for e in found))
            helpText = _roleNote(roles) + found[0].setting.help + _showDefault(found[0])
        else:
            helpText = "; ".join(
                _roleNote(e.roles) + e.setting.help + _showDefault(e) for e in found
            )
        result.append(Flag(name, found[0].setting.kind, helpText, tuple(found)))
    return result


# Reading settings


def checkEndpoint(description: str, label: str) -> None:
    """
    Parse a server endpoint string, without listening.

    @raise ConfigError: if it is not one, with a suggestion for a bare port
        or C{host:port}.
    """
    from twisted.internet.endpoints import serverFromString

    try:
        # Parsing only: the endpoint is made for a reactor it never uses.
        serverFromString(object(), description)
    except ValueError as e:
        hint = ""
        bare = re.fullmatch(r"(?:([^:]+):)?(\d+)", description)
        if bare:
            hint = f"; did you mean tcp:{bare[2]}:interface={bare[1] or '127.0.0.1'}?"
        raise ConfigError(
            f"{label} must be a Twisted endpoint string, such as tcp:2408:interface=127.0.0.1; "
            f"{description!r} is not one ({e}){hint}"
        ) from e
    except OSError as e:  # a file it names (ssl: certificates, say)
        raise ConfigError(f"{label}: {description!r} cannot be used: {e}") from e
    except (IndexError, KeyError) as e:  # systemd: a socket not inherited
        raise ConfigError(
            f"{label}: {description!r} names a socket this process did not"
            " inherit (systemd socket activation passes them, with LISTEN_FDS,"
            " LISTEN_PID and LISTEN_FDNAMES)"
        ) from e


@frozen
class _Reader:
    """
    Reads the value of each setting: a flag's, else the file's in the
    setting's table, else (for a setting also read at the top level) the
    file's top-level one; checks each as it is read.

    @ivar schema: the settings.
    @ivar file: the TOML file's content.
    @ivar given: the flags given, by name, their values parsed.
    @ivar environ: the environment.
    """

    schema: list[Entry]
    file: dict[str, Any]
    given: dict[str, Any]
    environ: Mapping[str, str]

    def _raw(self, entry: Entry) -> tuple[Any, bool]:
        setting = entry.setting
        if setting.flag is not None and setting.flag in self.given:
            return self.given[setting.flag], True
        value = MISSING
        if setting.alsoTop and setting.key in self.file:
            top = attrs.evolve(entry, table=None)
            value = self._checkType(top, self.file[setting.key])
        table = self.file if entry.table is None else self.file.get(entry.table, {})
        if setting.key in table:
            value = self._checkType(entry, table[setting.key])
        return value, False

    def _checkType(self, entry: Entry, value: Any) -> Any:
        setting = entry.setting
        if not setting.kind.accepts(value):
            wanted = setting.wanted or setting.kind.wanted
            raise ConfigError(
                f"{label(entry, self.schema)} must be {wanted}, not {value!r}"
            )
        return value

    def value(self, entry: Entry) -> Any:
        """
        The value of a setting in its table, checked but not range-checked;
        L{MISSING} when not given.
        """
        setting = entry.setting
        value, fromFlag = self._raw(entry)
        if value is MISSING:
            return value
        name = label(entry, self.schema)
        if setting.kind is ENDPOINT:
            checkEndpoint(value, name)
        if setting.check is not None:
            setting.check(value, name)
        return value

    def resolved(self, entry: Entry, role: str) -> Any:
        """
        The value of a setting given in one of several ways (the token),
        which its C{resolve} computes: from the flags if any of them is
        given, else from the file.
        """
        setting = entry.setting
        assert setting.resolve is not None
        group = [setting, *setting.also]
        table = self.file if entry.table is None else self.file.get(entry.table, {})
        fromFlags = any(s.flag in self.given for s in group)
        values = {}
        for s in group:
            if fromFlags and s.flag in self.given:
                values[s.key] = self.given[s.flag]
            elif not fromFlags and s.key in table:
                values[s.key] = self._checkType(
                    Entry(s, entry.table, entry.roles, None), table[s.key]
                )
        return setting.resolve(values, fromFlags, self.environ, role)


def checkFile(schema: list[Entry], file: dict[str, Any]) -> None:
    """
    Refuse unknown keys and tables that are not tables.

    @raise ConfigError: naming them.
    """
    unknown = set(file) - topKeys(schema)
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    for name in tables(schema):
        if not isinstance(file.get(name, {}), dict):
            raise ConfigError(f"{name} must be a table ([{name}]), not {file[name]!r}")
    for name in tables(schema):
        known = {e.setting.key for e in schema if e.table == name}
        unknownKeys = set(file.get(name, {})) - known
        if unknownKeys:
            raise ConfigError(
                f"unknown key(s) in [{name}]: {', '.join(sorted(unknownKeys))}"
            )


def load(
    root: type,
    file: dict[str, Any],
    given: dict[str, Any],
    environ: Mapping[str, str],
) -> Any:
    """
    Build the configuration C{root} from a TOML file's content and the
    flags given, which win over the file.

    C{root} has a C{role} setting; its sections are built for the roles
    their C{roles} name (the others are L{None}), with each setting's value
    checked against its declaration.

    @param file: the file's content, as C{tomllib} reads it.
    @param given: the flags given on the command line, by name, their
        values parsed (a list for a repeatable flag).
    @param environ: the environment (for C{RAILGUN_TOKEN}).
    @raise ConfigError: for anything unknown, missing or malformed, naming
        its flag and key.
    """
    schema = list(entries(root))
    reader = _Reader(schema, file, given, environ)
    role = reader.value(next(e for e in schema if e.setting.key == "role"))
    if role not in ROLES:
        got = None if role is MISSING else role
        raise ConfigError(f"--role must be one of {', '.join(ROLES)} (got {got!r})")
    checkFile(schema, file)
    # Every value given is checked, also those of a role not run (a typo
    # is a typo).
    values = {
        (e.table, e.setting.key): reader.value(e)
        for e in schema
        if e.setting.resolve is None
    }
    running = frozenset(("origin", "edge")) if role == "both" else frozenset((role,))
    for entry in schema:
        setting = entry.setting
        value = values.get((entry.table, setting.key))
        if (
            setting.wrongRole is not None
            and value not in (MISSING, None, [], ())
            and not running & entry.roles
        ):
            raise ConfigError(
                f"{label(entry, schema)} is for the {' and '.join(sorted(entry.roles))} "
                f"role: {setting.wrongRole}; remove it for --role {role}"
            )
    return _build(root, None, frozenset(ROLES), role, reader, values, schema)


def _build(
    cls: type,
    table: str | None,
    roles: frozenset[str],
    role: str,
    reader: _Reader,
    values: dict[tuple[str | None, str], Any],
    schema: list[Entry],
) -> Any:
    kwargs: dict[str, Any] = {}
    for attribute in attrs.fields(cls):
        held = attribute.metadata.get(SECTION)
        if held is not None:
            heldRoles = frozenset(held.roles) if held.roles is not None else roles
            built = role in heldRoles
            kwargs[attribute.name] = (
                _build(held.cls, held.table, heldRoles, role, reader, values, schema)
                if built
                else None
            )
            continue
        setting = attribute.metadata.get(SETTING)
        if setting is None:
            continue
        entry = Entry(
            setting,
            _tableOf(setting, table),
            frozenset(setting.roles) if setting.roles is not None else roles,
            attribute.default,
        )
        name = label(entry, schema)
        if setting.resolve is not None:
            value = reader.resolved(entry, role)
        else:
            value = values[(entry.table, setting.key)]
        if value is MISSING and role == "both" and setting.bothDefault is not MISSING:
            value = setting.bothDefault
        if (
            value is MISSING
            and attribute.default is NOTHING
            and setting.kind.repeatable
        ):
            value = []
        if (
            setting.required is not None
            and role != "both"
            and (value is MISSING or not value)
        ):
            raise ConfigError(f"the {role} role needs {setting.required}")
        if value is MISSING:
            continue
        if setting.convert is not None:
            value = setting.convert(value, name)
        setting.validate(value, name)
        kwargs[attribute.name] = value
    return cls(**kwargs)


__all__ = [
    "BOOLEAN",
    "DURATION",
    "ENDPOINT",
    "HOSTMAP",
    "LIST",
    "NUMBER",
    "SIZE",
    "STRING",
    "TOKEN",
    "WHOLE",
    "ConfigError",
    "Entry",
    "Flag",
    "Kind",
    "Section",
    "Setting",
    "entries",
    "flags",
    "label",
    "load",
    "section",
    "setting",
]

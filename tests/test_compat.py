"""
Tests for L{railgun._compat}: the private attributes of Twisted it relies on
still exist in the installed Twisted, its helpers still work on Twisted's
real objects, and no module outside it uses Twisted's private API.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import sys
from collections import deque
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.memcache import Command, MemCacheProtocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http

import railgun
import railgun._compat
from railgun._compat import memcache, tls, web
from railgun._compat import tcp as compatTCP

#: The top of the source tree.
ROOT = Path(railgun.__file__).resolve().parent.parent

#: Packages whose underscore names are private API this project may use only
#: in railgun/_compat.
_FENCED = ("twisted", "treq", "zstandard")

#: Uses of Twisted's private API outside railgun/_compat still to move into
#: it: (file, name). Empty: nothing else belongs here.
_PENDING: frozenset[tuple[str, str]] = frozenset()


def _isPrivate(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _isFenced(module: str) -> bool:
    return module.split(".")[0] in _FENCED


def _moduleName(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _railgunFiles() -> list[Path]:
    return sorted((ROOT / "railgun").rglob("*.py"))


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


@cache
def _classNodes(path: Path) -> dict[str, ast.ClassDef]:
    """
    @return: the classes defined in a module's source, by qualified name.
    """
    found: dict[str, ast.ClassDef] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                found[prefix + child.name] = child
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{prefix}{child.name}.<locals>.")

    visit(_tree(path), "")
    return found


def _classNode(cls: type) -> ast.ClassDef | None:
    """
    @return: the definition of C{cls} in its module's source, if found.
    """
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None) or ""
    if not filename.endswith(".py"):
        return None
    return _classNodes(Path(filename)).get(cls.__qualname__)


def _selfAssigned(node: ast.AST) -> set[str]:
    """
    @return: the names assigned as C{self.NAME = ...} under C{node}.
    """
    return {
        inner.attr
        for inner in ast.walk(node)
        if isinstance(inner, ast.Attribute)
        and isinstance(inner.ctx, ast.Store)
        and isinstance(inner.value, ast.Name)
        and inner.value.id == "self"
    }


@cache
def _definedBy(cls: type) -> frozenset[str]:
    """
    @return: the names C{cls} itself defines: in its class body, or as
        C{self.NAME = ...} in its methods.
    """
    names = set(vars(cls))
    node = _classNode(cls)
    if node is not None:
        names |= _selfAssigned(node)
    return frozenset(names)


def _fencedAttributes(cls: type) -> set[str]:
    """
    @return: the private names the Twisted (or treq) classes among C{cls}'s
        bases define, on the class or on its instances.
    """
    names: set[str] = set()
    for base in cls.__mro__:
        if _isFenced(base.__module__):
            names |= {name for name in _definedBy(base) if _isPrivate(name)}
    return names


def _fencedModules() -> set[ModuleType]:
    """
    @return: the Twisted and treq modules the package imports from, and
        those defining the bases of their classes.
    """
    modules = set()
    for path in _railgunFiles():
        importlib.import_module(_moduleName(path))
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if _isFenced(name) and name in sys.modules:
                    modules.add(sys.modules[name])
    for module in list(modules):
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                for base in value.__mro__:
                    if _isFenced(base.__module__):
                        modules.add(sys.modules[base.__module__])
    return modules


@cache
def _fencedNames() -> frozenset[str]:
    """
    @return: every private name defined by a class of the Twisted and treq
        modules the package uses (L{_fencedModules}): in a class body, or as
        C{self.NAME = ...}.
    """
    names: set[str] = set()
    for module in _fencedModules():
        filename = getattr(module, "__file__", None) or ""
        if not filename.endswith(".py"):
            continue
        for node in ast.walk(_tree(Path(filename))):
            if not isinstance(node, ast.ClassDef):
                continue
            names |= _selfAssigned(node)
            for statement in node.body:
                if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(statement.name)
                elif isinstance(statement, ast.Assign):
                    names |= {
                        t.id for t in statement.targets if isinstance(t, ast.Name)
                    }
                elif isinstance(statement, ast.AnnAssign) and isinstance(
                    statement.target, ast.Name
                ):
                    names.add(statement.target.id)
    return frozenset(name for name in names if _isPrivate(name))


def _classObject(module: str, node: ast.ClassDef) -> type | None:
    found = getattr(importlib.import_module(module), node.name, None)
    return found if isinstance(found, type) else None


@cache
def _ownNames() -> frozenset[str]:
    """
    @return: the private names this package defines itself: module-level
        names, and what its classes define that no Twisted base of theirs
        does.
    """
    names: set[str] = set()
    for path in _railgunFiles():
        module = _moduleName(path)
        tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                cls = _classObject(module, node)
                if cls is not None:
                    names |= _definedBy(cls) - _fencedAttributes(cls)
    return frozenset(name for name in names if _isPrivate(name))


def _privateUses(path: Path) -> Iterator[tuple[int, str]]:
    """
    Find the uses of Twisted's private API in one module: imports of a
    private module or name of Twisted or treq; C{self._NAME} in a class
    based on a Twisted class that defines C{_NAME}, and a method overriding
    one, or a class attribute replacing one; C{module._NAME} for a module
    of Twisted or treq; C{anything._NAME} where only Twisted defines
    C{_NAME}.

    Not found: private names reached through strings (C{getattr}).

    @return: (line, private name) pairs.
    """
    module = _moduleName(path)
    tree = _tree(path)
    fenced, own = _fencedNames(), _ownNames()
    # Names bound to modules that are not Twisted's (os._exit is not ours
    # to judge).
    otherModules = set()
    # Names bound to modules of Twisted or treq (http._DataLoss is private).
    fencedModules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if _isFenced(node.module):
                for part in node.module.split("."):
                    if _isPrivate(part):
                        yield node.lineno, part
                for alias in node.names:
                    if _isPrivate(alias.name):
                        yield node.lineno, alias.name
                    if _isModule(f"{node.module}.{alias.name}"):
                        fencedModules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if _isFenced(alias.name):
                    fencedModules.add(bound)
                    for part in alias.name.split("."):
                        if _isPrivate(part):
                            yield node.lineno, part
                else:
                    otherModules.add(bound)

    classes: dict[ast.AST, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = _classObject(module, node)
            if cls is not None:
                classes[node] = _fencedAttributes(cls)

    def visit(node: ast.AST, inherited: set[str]) -> Iterator[tuple[int, str]]:
        for child in ast.iter_child_nodes(node):
            if child in classes:
                bases = classes[child]
                assert isinstance(child, ast.ClassDef)
                for statement in child.body:
                    # A class attribute replacing a private one of Twisted's
                    if isinstance(statement, ast.Assign | ast.AnnAssign):
                        targets = (
                            statement.targets
                            if isinstance(statement, ast.Assign)
                            else [statement.target]
                        )
                        for target in targets:
                            if isinstance(target, ast.Name) and target.id in bases:
                                yield statement.lineno, target.id
                yield from visit(child, bases)
                continue
            if (
                isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                and child.name in inherited
            ):
                yield child.lineno, child.name
            if isinstance(child, ast.Attribute) and _isPrivate(child.attr):
                target = child.value
                if isinstance(target, ast.Name) and target.id in ("self", "cls"):
                    if child.attr in inherited:
                        yield child.lineno, child.attr
                        continue
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in fencedModules:
                    yield child.lineno, child.attr
                elif isinstance(target, ast.Name) and target.id in otherModules:
                    pass
                elif child.attr in fenced and child.attr not in own:
                    yield child.lineno, child.attr
            yield from visit(child, inherited)

    yield from visit(tree, set())


@cache
def _isModule(name: str) -> bool:
    """
    @return: whether C{name} names an importable module.
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _resolve(dotted: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except ImportError:
        moduleName, _, attribute = dotted.rpartition(".")
        return getattr(importlib.import_module(moduleName), attribute)


def _compatModules() -> list[ModuleType]:
    return [
        importlib.import_module(f"railgun._compat.{info.name}")
        for info in pkgutil.iter_modules(railgun._compat.__path__)
    ]


class FenceTests(SynchronousTestCase):
    """
    Twisted's private API is used in railgun/_compat only, and there only
    as declared.
    """

    maxDiff = None

    def test_noPrivateUseOutsideCompat(self) -> None:
        """
        No module of the package outside railgun/_compat (nor the twistd
        plugin) imports a private name of Twisted or treq, or reads, sets or
        overrides a private attribute of one of their objects.
        """
        found = []
        files = [*_railgunFiles(), ROOT / "twisted" / "plugins" / "railgun_plugin.py"]
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("railgun/_compat/"):
                continue
            for line, name in _privateUses(path):
                if (relative, name) not in _PENDING:
                    found.append(f"{relative}:{line}: {name}")
        self.assertEqual("\n".join(found), "", "use railgun/_compat instead")

    def test_guardFindsUses(self) -> None:
        """
        The guard finds each kind of private use: in railgun/_compat, where
        they are, it reports the known ones.
        """
        found = {
            name
            for path in (ROOT / "railgun" / "_compat").glob("*.py")
            for _, name in _privateUses(path)
        }
        for name in (
            "_tempDataLen",  # self._NAME in a mixin: only Twisted defines it
            "_flushSendBIO",  # a method overriding Twisted's
            "_lostTLSConnection",  # self._NAME in a Twisted subclass
            "_dataBuffer",  # anything._NAME, set as well as read
            "_deferred",  # anything._NAME
            "_log",  # a class attribute replacing Twisted's
        ):
            self.assertIn(name, found)

    def test_compatDeclaresWhatItUses(self) -> None:
        """
        Every private name of Twisted a railgun/_compat module uses is
        declared in its C{TWISTED_PRIVATE}, so that the existence tests
        below cover it.
        """
        for module in _compatModules():
            declared = {
                name
                for names in getattr(module, "TWISTED_PRIVATE", {}).values()
                for name in names
            }
            used = {name for _, name in _privateUses(Path(module.__file__ or ""))}
            self.assertEqual(
                used - declared, set(), f"{module.__name__}: add to TWISTED_PRIVATE"
            )


class ExistenceTests(SynchronousTestCase):
    """
    The private attributes railgun/_compat relies on exist in this Twisted.
    """

    def test_declaredAttributesExist(self) -> None:
        """
        Each name in each compat module's C{TWISTED_PRIVATE} is defined by
        the class (on the class, or on its instances by its own or a base's
        methods) or the module named.
        """
        missing = []
        for module in _compatModules():
            for owner, names in getattr(module, "TWISTED_PRIVATE", {}).items():
                target = _resolve(owner)
                if isinstance(target, type):
                    defined = set(dir(target))
                    for base in target.__mro__:
                        defined |= _definedBy(base)
                else:
                    defined = set(vars(target))
                missing += [f"{owner}.{name}" for name in names if name not in defined]
        self.assertEqual(missing, [])

    def test_eagerTransports(self) -> None:
        """
        Twisted's TCP transports have what L{compatTCP.EagerWrites} reads.
        """
        for cls in (tcp.Server, tcp.Client):
            defined = set(dir(cls))
            for base in cls.__mro__:
                defined |= _definedBy(base)
            self.assertEqual(set(compatTCP.EAGER_NEEDS) - defined, set())

    def test_socketUnderProxyProducer(self) -> None:
        """
        L{compatTCP.socketUnder} finds the socket under the transport of an
        HTTP client response (Twisted's TransportProxyProducer).
        """
        from twisted.web._newclient import TransportProxyProducer

        socket = tcp.Server.__new__(tcp.Server)
        self.assertIs(compatTCP.socketUnder(TransportProxyProducer(socket)), socket)

    def test_batchedTLS(self) -> None:
        """
        Twisted's TLS transport has every internal the batched one uses
        (otherwise links fall back to Twisted's own).
        """
        self.assertTrue(
            all(hasattr(TLSMemoryBIOProtocol, name) for name in tls.TLS_INTERNALS)
        )


class WebTests(SynchronousTestCase):
    """
    L{web}'s helpers on twisted.web's real channel and request.
    """

    def _channel(self) -> http.HTTPChannel:
        channel = http.HTTPChannel()
        channel.requestFactory = http.Request  # type: ignore[assignment]
        channel.makeConnection(StringTransport())
        return channel

    def test_requestLine(self) -> None:
        """
        After a request head, L{web.requestLine} gives its method, target
        and version, and L{web.receivedHeaderSize} counts its bytes.
        """
        channel = self._channel()
        seen = []
        original = channel.allHeadersReceived

        def allHeadersReceived() -> None:
            seen.append((web.requestLine(channel), web.receivedHeaderSize(channel)))
            original()

        channel.allHeadersReceived = allHeadersReceived  # type: ignore[method-assign]
        channel.dataReceived(b"GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n")
        [(line, size)] = seen
        self.assertEqual(line, (b"GET", b"/x?y", b"HTTP/1.1"))
        self.assertGreater(size, 0)

    def test_pipelinedRequestsBuffered(self) -> None:
        """
        A request that arrives while one is handled is buffered, and can be
        taken once the channel waits for its transport (the client does not
        read).
        """
        channel = self._channel()
        self.assertFalse(web.handlingRequest(channel))
        channel.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(web.handlingRequest(channel))
        channel.dataReceived(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(len(channel.requests), 1)
        self.assertIsNone(web.takeBufferedRequests(channel))
        channel.pauseProducing()
        self.assertEqual(
            web.takeBufferedRequests(channel), b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        self.assertIsNone(web.takeBufferedRequests(channel))

    def test_setHandlingRequest(self) -> None:
        """
        L{web.setHandlingRequest} sets what L{web.handlingRequest} reads.
        """
        channel = self._channel()
        web.setHandlingRequest(channel, True)
        self.assertTrue(web.handlingRequest(channel))
        web.setHandlingRequest(channel, False)
        self.assertFalse(web.handlingRequest(channel))

    def test_requestDisconnected(self) -> None:
        """
        L{web.requestDisconnected} says when a request's connection is lost.
        """
        channel = self._channel()
        request = http.Request(channel)
        self.assertFalse(web.requestDisconnected(request))
        request.connectionLost(Exception("gone"))  # type: ignore[arg-type]
        self.assertTrue(web.requestDisconnected(request))


class MemcacheTests(SynchronousTestCase):
    """
    L{memcache}'s helpers on Twisted's real memcache client.
    """

    def test_pendingAndFailed(self) -> None:
        """
        A command sent is pending with its L{Deferred}; failing the pending
        commands fails it.
        """
        protocol = MemCacheProtocol()
        # Its response timeout on a clock of the test's, not the reactor's.
        protocol.callLater = Clock().callLater  # type: ignore[method-assign]
        protocol.makeConnection(StringTransport())
        d = protocol.get(b"k")
        pending = memcache.pendingCommands(protocol)
        self.assertIsInstance(pending, deque)
        self.assertIs(memcache.commandResult(pending[0]), d)
        memcache.failPendingCommands(protocol, RuntimeError("x"))
        self.failureResultOf(d, RuntimeError)
        self.assertFalse(memcache.isDisconnected(protocol))
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertTrue(memcache.isDisconnected(protocol))

    def test_commandResult(self) -> None:
        """
        A L{Command}'s result is a L{Deferred}.
        """
        self.assertIsInstance(memcache.commandResult(Command(b"get")), Deferred)

"""
Tests for the layering of the package (docs/architecture.md): read from the
imports of every module's source (C{ast}), so a change that breaks a rule
fails here, naming the import.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import railgun

#: The top of the source tree.
ROOT = Path(railgun.__file__).resolve().parent.parent

#: The layers, lowest first: a module may import modules of its own layer
#: or of lower ones, never of a higher one.  C{"a.b.*"} is C{a.b} and every
#: module under it; the longest pattern that matches a module places it.
#: Keep in step with the table in docs/architecture.md.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("compat", ("railgun._compat.*",)),
    (
        "pure",
        (
            "railgun._lifecycle",
            "railgun.link.errors",
            "railgun.link.frames",
            "railgun.link.headerblock",
            "railgun.http.*",
            "railgun.delta.*",
            "railgun.stores.memcached.format",
        ),
    ),
    (
        "support",
        (
            "railgun._listening",
            "railgun._lograte",
            "railgun._lru",
            "railgun._memory",
            "railgun._producers",
            "railgun._sockets",
            "railgun._threads",
            "railgun.certs",
            "railgun.link.counting",
            "railgun.link.requestid",
            "railgun.logs",
            "railgun.stats",
            "railgun.stores._common",
            "railgun.stores._ratelimit",
            "railgun.stores.interfaces",
            "railgun.tls",
            "railgun.versions",
        ),
    ),
    ("protocols", ("railgun.link.*", "railgun.stores.*", "railgun.upstream.*")),
    ("settings", ("railgun.config", "railgun.settings.*")),
    ("roles", ("railgun.edge.*", "railgun.origin.*")),
    (
        "assembly",
        (
            "railgun",
            "railgun.__main__",
            "railgun.both",
            "railgun.cli",
            "railgun.daemon",
            "railgun.sample",
            "railgun.tap",
            "railgun.worker",
            "railgun.workers",
            "railgun.admin.*",
        ),
    ),
)

#: The pure layer may use these Twisted modules: Deferreds, interfaces,
#: failures, logging, and handing work to a thread pool it is given.  Never
#: a reactor, a transport, a protocol, an endpoint, a timer or a service.
PURE_TWISTED = frozenset(
    {
        "twisted.internet.defer",
        "twisted.internet.interfaces",
        "twisted.internet.threads",
        "twisted.logger",
        "twisted.python.failure",
        "twisted.python.threadpool",
    }
)

#: The pure layer may use these libraries besides the standard library.
PURE_LIBRARIES = frozenset({"attrs", "brotli", "hpack", "zope", "zstandard"})

#: Standard library modules that do I/O or run an event loop: not pure.
IO_STDLIB = frozenset(
    {
        "asyncio",
        "http.client",
        "http.server",
        "multiprocessing",
        "select",
        "selectors",
        "signal",
        "socket",
        "socketserver",
        "ssl",
        "subprocess",
        "urllib.request",
    }
)


def _moduleName(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _moduleName(path): path for path in sorted((ROOT / "railgun").rglob("*.py"))
    }


def _layer(module: str) -> int | None:
    """
    @return: the index in L{LAYERS} of the layer C{module} is in, or L{None}.
    """
    best: tuple[int, int] | None = None
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern.endswith(".*"):
                prefix = pattern[:-2]
                matches = module == prefix or module.startswith(prefix + ".")
                length = len(prefix)
            else:
                matches = module == pattern
                length = len(pattern) + 1  # exact beats a subtree
            if matches and (best is None or length > best[0]):
                best = (length, index)
    return None if best is None else best[1]


def _isTypeChecking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """
    @return: the modules an import statement in C{module} imports: for
        C{from a import b}, C{a.b} when that is a module of the package,
        else C{a}.
    """
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        base = module.split(".")
        if _modules()[module].name != "__init__.py":
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    for alias in node.names:
        name = f"{source}.{alias.name}"
        yield name if name in _modules() or _isModule(name) else source


@cache
def _isModule(name: str) -> bool:
    """
    @return: whether C{name} names an importable module outside the package
        (C{from twisted.internet import reactor} imports C{twisted.internet}
        and an object; C{from twisted.internet import defer}, a module).
    """
    if _ours(name):
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@cache
def _imports(module: str) -> tuple[tuple[int, str, bool], ...]:
    """
    @return: (line, imported module, at module level) for every import in
        C{module}'s source, except those under C{if TYPE_CHECKING:} (never
        run).  Module level includes class bodies and C{if}/C{try} blocks;
        an import inside a function is not at module level.
    """
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _isTypeChecking(child):
                for other in child.orelse:
                    visit(other, top)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend(
                    (child.lineno, target, top) for target in _targets(module, child)
                )
            inner = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            visit(child, inner)

    visit(ast.parse(_modules()[module].read_text(encoding="utf-8")), True)
    return tuple(found)


def _ours(target: str) -> bool:
    return target == "railgun" or target.startswith("railgun.")


class LayerTests(SynchronousTestCase):
    """
    Who may import whom.
    """

    def test_everyModulePlaced(self) -> None:
        """
        Every module of the package is in a layer (a new one is placed in
        L{LAYERS} and in docs/architecture.md).
        """
        self.assertEqual([m for m in _modules() if _layer(m) is None], [])

    def test_pureModulesExist(self) -> None:
        """
        Each module the pure layer names exists (the table stays true).
        """
        patterns = dict(LAYERS)["pure"]
        for pattern in patterns:
            self.assertIn(pattern.removesuffix(".*"), _modules())

    def test_noUpwardImports(self) -> None:
        """
        No module imports one of a higher layer, even inside a function.
        """
        found = []
        for module in _modules():
            own = _layer(module)
            for line, target, _ in _imports(module):
                theirs = _layer(target) if _ours(target) else None
                if own is not None and theirs is not None and theirs > own:
                    found.append(
                        f"{module}:{line}: {target} "
                        f"({LAYERS[own][0]} imports {LAYERS[theirs][0]})"
                    )
        self.assertEqual(found, [])

    def test_rolesApart(self) -> None:
        """
        Nothing in railgun.edge imports railgun.origin, nor the reverse,
        even inside a function: what both need is in a lower layer
        (railgun.upstream for the HTTP client to an origin server).
        """
        found = []
        for module in _modules():
            for role, other in (("edge", "origin"), ("origin", "edge")):
                if not (module + ".").startswith(f"railgun.{role}."):
                    continue
                for line, target, _ in _imports(module):
                    if (target + ".").startswith(f"railgun.{other}."):
                        found.append(f"{module}:{line}: {target}")
        self.assertEqual(found, [])

    def test_pureImportsNoIO(self) -> None:
        """
        Pure modules import, even inside a function, only the standard
        library without its I/O modules (L{IO_STDLIB}), L{PURE_LIBRARIES},
        the Twisted modules of L{PURE_TWISTED} and other pure modules.
        """
        pure = LAYERS.index(("pure", dict(LAYERS)["pure"]))
        found = []
        for module in _modules():
            if _layer(module) != pure:
                continue
            for line, target, _ in _imports(module):
                top = target.split(".")[0]
                if _ours(target):
                    allowed = _layer(target) is not None and _layer(target) <= pure  # type: ignore[operator]
                elif top == "twisted":
                    allowed = target in PURE_TWISTED
                elif top in sys.stdlib_module_names:
                    allowed = not any(
                        target == io or target.startswith(io + ".") for io in IO_STDLIB
                    )
                else:
                    allowed = top in PURE_LIBRARIES
                if not allowed:
                    found.append(f"{module}:{line}: {target}")
        self.assertEqual(found, [])

    def test_compatImportsNothingOfOurs(self) -> None:
        """
        railgun/_compat, the bottom layer, imports no other module of the
        package.
        """
        found = [
            f"{module}:{line}: {target}"
            for module in _modules()
            if module.startswith("railgun._compat")
            for line, target, _ in _imports(module)
            if _ours(target) and not target.startswith("railgun._compat")
        ]
        self.assertEqual(found, [])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    @return: the strongly connected components of C{graph} that are
        cycles (Tarjan's algorithm), each sorted.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        onStack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in onStack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                onStack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


class CycleTests(SynchronousTestCase):
    """
    No import cycle among the package's modules.
    """

    def test_noCycle(self) -> None:
        """
        The graph of module-level imports between the package's modules has
        no cycle.  (A package's C{__init__} that imports its own modules is
        not a cycle: Python runs the package first; imports inside
        functions are how a module defers one, and are not counted.)
        """
        graph = {
            module: {
                target
                for _, target, top in _imports(module)
                if top and target in _modules() and target != module
            }
            for module in _modules()
        }
        self.assertEqual(_cycles(graph), [])

    def test_cycleFound(self) -> None:
        """
        L{_cycles} finds a cycle, and only the modules on it.
        """
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
        self.assertEqual(_cycles(graph), [["a", "b", "c"], ["e"]])
        self.assertEqual(_cycles({"a": {"b"}, "b": set()}), [])


class VersionTests(SynchronousTestCase):
    """
    One source for the version.
    """

    def test_setupReadsPackageVersion(self) -> None:
        """
        The distribution's version (setup.py) is C{railgun.__version__}: it
        is written in railgun/__init__.py only.
        """
        setup = ROOT / "setup.py"
        if not setup.exists():
            raise SkipTest("not run from a source tree")
        result = subprocess.run(
            [sys.executable, str(setup), "--version"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self.assertEqual(result.stdout.strip().splitlines()[-1], railgun.__version__)
        self.assertFalse(
            railgun.__version__ in setup.read_text(encoding="utf-8"),
            "setup.py writes the version itself",
        )

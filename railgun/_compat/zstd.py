"""
What python-zstandard's public API lacks, taken from its own cffi backend:
a base hashed once at a chosen level into a compression dictionary
(C{ZSTD_CDict}), and frames compressed with it, without the GIL.

Why: at zstd's best levels, hashing a 700 KB base into its binary trees
costs 80-130 ms, three to five times the frame made against it. The public
API either hashes the base again for every frame
(C{ZstdCompressor(dict_data=...)}) or hashes it once holding the GIL
(C{ZstdCompressionDict.precompute_compress}), which would stall the reactor
thread for as long. Through the cffi backend, the base is hashed once, in
a background thread, with the GIL released (cffi releases it around every C
call), and each frame then copies the hashed tables instead
(C{docs/benchmarks.md}, "Prepared bases").

Private API used: the module C{zstandard._cffi} (the compiled cffi backend
shipped in zstandard's wheels, with the libzstd it bundles) and these of its
C{lib}: L{LIB_NEEDS}. Checked by C{tests/test_compat_zstd.py}. When the
backend cannot be imported (C{cffi} missing), L{AVAILABLE} is false and
callers use the public API instead.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

_backend: Any
try:
    # Not in zstandard's type stubs: it is the backend's own module.
    _backend = importlib.import_module("zstandard._cffi")
except ImportError:  # pragma: no cover - cffi comes with cryptography
    _backend = None

#: The functions and constants of libzstd this module calls.
LIB_NEEDS = (
    "ZSTD_getCParams",
    "ZSTD_createCDict_advanced",
    "ZSTD_freeCDict",
    "ZSTD_sizeof_CDict",
    "ZSTD_createCCtx",
    "ZSTD_freeCCtx",
    "ZSTD_sizeof_CCtx",
    "ZSTD_CCtx_reset",
    "ZSTD_CCtx_setParameter",
    "ZSTD_CCtx_refCDict",
    "ZSTD_compressStream2",
    "ZSTD_CCtx_setPledgedSrcSize",
    "ZSTD_e_continue",
    "ZSTD_e_end",
    "ZSTD_c_windowLog",
    "ZSTD_c_stableInBuffer",
    "ZSTD_compressBound",
    "ZSTD_isError",
    "ZSTD_getErrorName",
    "ZSTD_versionNumber",
    "ZSTD_dlm_byCopy",
    "ZSTD_dct_rawContent",
    "ZSTD_defaultCMem",
    "ZSTD_reset_session_and_parameters",
    "ZSTD_c_contentSizeFlag",
    "ZSTD_c_checksumFlag",
    "ZSTD_c_dictIDFlag",
    "ZSTD_c_format",
    "ZSTD_c_forceAttachDict",
    "ZSTD_dictDefaultAttach",
    "ZSTD_dictForceAttach",
    "ZSTD_f_zstd1",
    "ZSTD_f_zstd1_magicless",
)

AVAILABLE = _backend is not None and all(hasattr(_backend.lib, n) for n in LIB_NEEDS)
"""
Whether prepared bases can be made here.
"""

#: Compression contexts kept for reuse: one, as the origin role makes one
#: level-19 frame at a time; it holds tables the size of the largest base's
#: (~35 MB for a 740 KB page at level 19), and is not kept when larger than
#: L{_KEEP_CONTEXT_BYTES} (a 1 MB base's: made again when needed).
_KEEP_CONTEXTS = 1
_KEEP_CONTEXT_BYTES = 48 * 1024 * 1024


class ZstdLibError(Exception):
    """
    libzstd refused a call (out of memory, bad parameters).
    """


def _check(result: int) -> int:
    lib, ffi = _backend.lib, _backend.ffi
    if lib.ZSTD_isError(result):
        raise ZstdLibError(ffi.string(lib.ZSTD_getErrorName(result)).decode())
    return result


def _cParams(level: int, windowLog: int, base: bytes, sizeHint: int) -> Any:
    assert _backend is not None
    params = _backend.lib.ZSTD_getCParams(level, max(1, sizeHint), len(base))
    params.windowLog = windowLog
    return params


#: Input handed to libzstd per call when a frame has a deadline: one block,
#: so that an abandoned frame overruns by one block's time at most.
_STEP = 128 * 1024


class PreparedBase:
    """
    A base hashed into a compression dictionary at one level, for frames of
    up to a given window. Thread-safe: frames may be made with it from
    several threads at once (libzstd only reads a dictionary).

    @ivar level: the zstd level it was hashed at.
    @ivar windowLog: the window frames made with it use.
    @ivar size: bytes it takes (libzstd's own count: tables and its copy of
        the base).
    """

    def __init__(self, base: bytes, level: int, windowLog: int, sizeHint: int):
        """
        Hash C{base}: the expensive step, meant for a background thread.

        @param sizeHint: expected size of the targets, which with the base's
            decides the tables' sizes.
        @raise ZstdLibError: when libzstd cannot make it.
        """
        assert _backend is not None
        lib, ffi = _backend.lib, _backend.ffi
        # By copy: the dictionary then owns its bytes, whatever happens to
        # the Python object.
        cdict = lib.ZSTD_createCDict_advanced(
            ffi.from_buffer(base),
            len(base),
            lib.ZSTD_dlm_byCopy,
            lib.ZSTD_dct_rawContent,
            _cParams(level, windowLog, base, sizeHint),
            lib.ZSTD_defaultCMem,
        )
        if cdict == ffi.NULL:
            raise ZstdLibError("ZSTD_createCDict_advanced failed")
        self._cdict = ffi.gc(cdict, lib.ZSTD_freeCDict, size=0)
        self.level = level
        self.windowLog = windowLog
        self.size = int(lib.ZSTD_sizeof_CDict(cdict))

    def compress(
        self,
        target: bytes,
        magicless: bool = False,
        attach: bool = False,
        deadline: float | None = None,
    ) -> bytes | None:
        """
        One frame of C{target} against the base: content size written, no
        checksum, no dictionary id; without the 4-byte magic number when
        C{magicless}.

        @param attach: search the hashed base in place, apart from the
            target's own matches, instead of copying its tables and adding
            the target to them (libzstd's choice above a few KB): 0.1-1.4%
            smaller deltas on the measured pages, for 1.1-3 times the time
            (C{docs/benchmarks.md}, "Prepared bases").
        @param deadline: CPU seconds of the calling thread after which the
            frame is abandoned (checked after each block; L{None}: none).
        @return: the frame, or L{None} when abandoned.
        @raise ZstdLibError: when libzstd fails.
        """
        assert _backend is not None
        lib, ffi = _backend.lib, _backend.ffi
        started = time.thread_time()
        cctx = _contexts.take()
        try:
            _check(lib.ZSTD_CCtx_reset(cctx, lib.ZSTD_reset_session_and_parameters))
            for param, value in (
                (lib.ZSTD_c_contentSizeFlag, 1),
                (lib.ZSTD_c_checksumFlag, 0),
                (lib.ZSTD_c_dictIDFlag, 0),
                # The dictionary's window is not the frame's: libzstd takes
                # that one from the parameters of the frame.
                (lib.ZSTD_c_windowLog, self.windowLog),
                # The target stays where it is, as for a one-shot frame
                # (buffering it makes the frame a little larger).
                (lib.ZSTD_c_stableInBuffer, 1),
                (
                    lib.ZSTD_c_format,
                    lib.ZSTD_f_zstd1_magicless if magicless else lib.ZSTD_f_zstd1,
                ),
                (
                    lib.ZSTD_c_forceAttachDict,
                    lib.ZSTD_dictForceAttach if attach else lib.ZSTD_dictDefaultAttach,
                ),
            ):
                _check(lib.ZSTD_CCtx_setParameter(cctx, param, value))
            _check(lib.ZSTD_CCtx_refCDict(cctx, self._cdict))
            _check(lib.ZSTD_CCtx_setPledgedSrcSize(cctx, len(target)))
            capacity = lib.ZSTD_compressBound(len(target))
            out = ffi.new("char[]", capacity)
            output = ffi.new("ZSTD_outBuffer *", {"dst": out, "size": capacity})
            source = ffi.from_buffer(target)
            given = ffi.new("ZSTD_inBuffer *", {"src": source, "size": 0})
            while given.pos < len(target):
                given.size = min(len(target), given.pos + _STEP)
                while given.pos < given.size:
                    _check(
                        lib.ZSTD_compressStream2(
                            cctx, output, given, lib.ZSTD_e_continue
                        )
                    )
                if deadline is not None and time.thread_time() - started > deadline:
                    return None
            while _check(lib.ZSTD_compressStream2(cctx, output, given, lib.ZSTD_e_end)):
                pass
            return bytes(ffi.buffer(out, output.pos))
        finally:
            # Whatever happened, the context keeps no reference to the
            # dictionary and no frame half made.
            lib.ZSTD_CCtx_reset(cctx, lib.ZSTD_reset_session_and_parameters)
            _check(lib.ZSTD_CCtx_refCDict(cctx, ffi.NULL))
            _contexts.give(cctx)


class _Contexts:
    """
    A few compression contexts kept between frames: allocating one with
    tables for a large base costs several milliseconds of page faults.
    """

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._free: list[Any] = []
        self._lock = threading.Lock()

    def take(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
        assert _backend is not None
        cctx = _backend.lib.ZSTD_createCCtx()
        if cctx == _backend.ffi.NULL:
            raise ZstdLibError("ZSTD_createCCtx failed")
        return _backend.ffi.gc(cctx, _backend.lib.ZSTD_freeCCtx)

    def give(self, cctx: Any) -> None:
        assert _backend is not None
        if _backend.lib.ZSTD_sizeof_CCtx(cctx) > _KEEP_CONTEXT_BYTES:
            return
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(cctx)

    def __len__(self) -> int:
        return len(self._free)

    @property
    def size(self) -> int:
        """
        Bytes the kept contexts take.
        """
        assert _backend is not None
        with self._lock:
            return sum(int(_backend.lib.ZSTD_sizeof_CCtx(c)) for c in self._free)


_contexts = _Contexts(_KEEP_CONTEXTS)


def keptContextBytes() -> int:
    """
    @return: bytes the compression contexts kept between frames take.
    """
    return _contexts.size if AVAILABLE else 0


def libraryVersion() -> str:
    """
    @return: the version of the libzstd prepared bases use, e.g.
        C{"1.5.7"}, or C{""} when unavailable.
    """
    if not AVAILABLE:
        return ""
    assert _backend is not None
    n = int(_backend.lib.ZSTD_versionNumber())
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"

"""
Memory the process gives back: large buffers freed are returned to the
system at once, not kept by the C allocator.

Why: glibc's malloc raises its mmap threshold to the size of each large
block freed (up to 32 MiB), so after the first free the origin role's
17 MB level-19 dictionaries (L{railgun._compat.zstd.PreparedBase}) and
compression contexts come from the heap, where freed ones stay in the
process: measured, an origin role preparing 740 KB pages at 4 requests at a
time peaked at 456 MB of RSS where its prepared bases held 54 MB; with the
threshold fixed, 203 MB. Setting the threshold explicitly stops the
adjustment, so blocks over it are mapped and unmapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's C{M_MMAP_THRESHOLD} option of C{mallopt}.
_M_MMAP_THRESHOLD = -3

#: Blocks from this size up are mapped, and unmapped when freed: over
#: Python's own objects of a page or two, under every prepared base of more
#: than ~30 KB.
MMAP_THRESHOLD = 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def returnLargeFrees(threshold: int = MMAP_THRESHOLD) -> bool:
    """
    Make the C allocator map blocks of C{threshold} bytes and more, and
    unmap them when freed (glibc; process-wide).

    @return: whether it was set (not with another C library).
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold)))

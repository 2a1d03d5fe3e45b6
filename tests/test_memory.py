"""
Tests for L{railgun._memory}: large blocks freed go back to the system.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

# Run in a fresh interpreter: the allocator's state is process-wide. After
# a 16 MiB block is freed, does a 2 MiB one get mapped of its own (and so
# unmapped when freed)? glibc's mallinfo2 counts mapped bytes.
_PROBE = """
import ctypes, ctypes.util, sys
sys.path.insert(0, {root!r})
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if {fix!r}:
    from railgun._memory import returnLargeFrees
    assert returnLargeFrees()
libc.free(libc.malloc(16 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(block)
"""


class ReturnLargeFreesTests(SynchronousTestCase):
    """
    Tests for L{railgun._memory.returnLargeFrees}.
    """

    def probe(self, fix: bool) -> int:
        import railgun

        root = str(__import__("pathlib").Path(railgun.__file__).parent.parent)
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(root=root, fix=fix)],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return int(out.stdout)

    def test_mappedAfterALargeFree(self) -> None:
        """
        With it, a 2 MiB block is mapped even after a 16 MiB one was freed
        (without it, glibc's threshold rose to 16 MiB and the block came
        from the heap, where it would stay once freed).
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("glibc's allocator")
        self.assertEqual(self.probe(fix=False), 0)
        self.assertGreaterEqual(self.probe(fix=True), 2 << 20)

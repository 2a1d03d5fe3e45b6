"""
Read the delta-compression corpus: sequences of successive versions of one
URL each, C{<corpus>/<sequence>/0001.<ext>}, oldest first.

The corpus is third-party material kept outside the repository (by default
C{../shared/corpus} next to the repository root); nothing here copies it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from attrs import frozen

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus"


class CorpusMissing(Exception):
    """
    The corpus directory is absent or holds no sequence.
    """


@frozen
class Sequence:
    """
    Successive versions of one URL.

    @ivar name: the directory name, e.g. C{"heise-home"}.
    @ivar versions: the bodies, oldest first.
    """

    name: str
    versions: tuple[bytes, ...]

    def pairs(self) -> Iterator[tuple[bytes, bytes]]:
        """
        @return: the benchmark pairs (base, target): (1, 2), (2, 3), ...
        """
        for i in range(len(self.versions) - 1):
            yield self.versions[i], self.versions[i + 1]


def loadCorpus(path: Path = DEFAULT_CORPUS) -> list[Sequence]:
    """
    Read every sequence under C{path}.

    @param path: the corpus directory.
    @return: the sequences, sorted by name.
    @raise CorpusMissing: when C{path} has no sequence, with a message
        saying where it looked and how to point elsewhere.
    """
    path = Path(path)
    sequences = []
    if path.is_dir():
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            files = sorted(
                f for f in sub.iterdir() if f.is_file() and f.name[:4].isdigit()
            )
            if len(files) >= 2:
                sequences.append(
                    Sequence(sub.name, tuple(f.read_bytes() for f in files))
                )
    if not sequences:
        raise CorpusMissing(
            f"no corpus found at {path} (expected <sequence>/0001.<ext>, "
            f"0002.<ext>, ...); pass --corpus PATH to point at it"
        )
    return sequences

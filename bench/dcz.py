"""
The delta to the browser: the bytes of each version of the corpus' pages
sent to a browser that holds the previous version, as C{dcz} (RFC 9842,
what the edge sends with C{--dictionaries}) against C{gzip} and C{br}.

    python -m bench dcz [--corpus PATH]
    python -m bench.dcz [--corpus PATH] [--json OUT] [--docs FILE]

For each pair (version n, version n+1) of each sequence: the body bytes of
version n+1 in gzip at the edge's level (6), br at the edge's quality (5)
and at the best (11), and dcz with version n as the dictionary, made by the
edge's own function (L{railgun.edge.dictionaries.encodeDcz}: the 40-byte
header and a zstd level 9 frame). "Edge sends" is what the edge chooses for
such a browser: dcz when smaller than br, else br. Body bytes only: the
response headers are the same few hundred bytes whatever the coding, less
a line. Each dcz body is checked to decode to the target.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import brotli

from bench.corpus import DEFAULT_CORPUS, CorpusMissing, Sequence, loadCorpus
from railgun.delta.content import BROTLI_QUALITY, GZIP_LEVEL
from railgun.edge.dictionaries import decodeDcz, encodeDcz

COLUMNS = ("identity", "gzip", "br", "br11", "dcz", "sent")


def measurePair(base: bytes, target: bytes) -> dict[str, float]:
    """
    The bytes of C{target} in each coding, C{base} being the dictionary;
    and the time dcz took.
    """
    started = time.perf_counter()
    dcz = encodeDcz(target, base)
    elapsed = time.perf_counter() - started
    if decodeDcz(dcz, base) != target:
        raise AssertionError("a dcz body did not decode to its target")
    br = len(brotli.compress(target, mode=brotli.MODE_TEXT, quality=BROTLI_QUALITY))
    return {
        "identity": len(target),
        "gzip": len(gzip.compress(target, compresslevel=GZIP_LEVEL, mtime=0)),
        "br": br,
        "br11": len(brotli.compress(target, mode=brotli.MODE_TEXT, quality=11)),
        "dcz": len(dcz),
        "sent": min(len(dcz), br),
        "dcz_s": elapsed,
    }


def measure(sequences: list[Sequence], quick: bool = False) -> dict[str, Any]:
    """
    @return: per sequence and in total, the bytes of each coding summed over
        its pairs, and the median dcz encode time.
    """
    rows = []
    totals = dict.fromkeys(COLUMNS, 0)
    times = []
    for sequence in sequences:
        pairs = list(sequence.pairs())[: 2 if quick else None]
        sums = dict.fromkeys(COLUMNS, 0)
        for base, target in pairs:
            pair = measurePair(base, target)
            times.append(pair["dcz_s"])
            for column in COLUMNS:
                sums[column] += int(pair[column])
        for column in COLUMNS:
            totals[column] += sums[column]
        rows.append({"sequence": sequence.name, "pairs": len(pairs), **sums})
    return {
        "rows": rows,
        "totals": totals,
        "pairs": sum(r["pairs"] for r in rows),
        "dcz_median_ms": statistics.median(times) * 1000 if times else 0.0,
    }


async def runDcz(reactor: Any, quick: bool, corpus: Path) -> dict[str, Any]:
    """
    The C{dcz} scenario of C{python -m bench}.
    """
    from twisted.internet.threads import deferToThread

    try:
        sequences = loadCorpus(corpus)
    except CorpusMissing as e:
        return {"scenario": "dcz", "skipped": str(e), "errors": 0}
    data = await deferToThread(measure, sequences, quick)
    # No target: the issue asks for the figures, not a threshold.
    return {"scenario": "dcz", "skipped": None, "errors": 0, "data": data}


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def tables(result: dict[str, Any]) -> str:
    """
    @return: the Markdown of a C{dcz} result.
    """
    data = result["data"]
    head = (
        "| sequence | pairs | identity | gzip-6 | br-5 | br-11 | dcz | edge sends "
        "| dcz / br-5 |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in [
        *data["rows"],
        {"sequence": "**all**", "pairs": data["pairs"], **data["totals"]},
    ]:
        lines.append(
            f"| {r['sequence']} | {r['pairs']} | {r['identity']:,} | "
            f"{r['gzip']:,} | {r['br']:,} | {r['br11']:,} | {r['dcz']:,} | "
            f"{r['sent']:,} | {_pct(r['dcz'], r['br'])} |"
        )
    t = data["totals"]
    return (
        f"Body bytes of version n+1 for a browser holding version n, summed over "
        f"the pairs of each sequence. Over all {data['pairs']} pairs dcz is "
        f"{_pct(t['dcz'], t['gzip'])} of gzip-6 and {_pct(t['dcz'], t['br'])} of "
        f"br-5 ({_pct(t['dcz'], t['identity'])} of the identity bytes); median "
        f"dcz encode {data['dcz_median_ms']:.1f} ms per page.\n\n"
        + head
        + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dcz", description=__doc__)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--quick", action="store_true", help="two pairs a sequence")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        sequences = loadCorpus(args.corpus)
    except CorpusMissing as e:
        sys.stderr.write(f"{e}\n")
        return 2
    data = measure(sequences, args.quick)
    result = {"scenario": "dcz", "data": data}
    text = tables(result)
    sys.stdout.write(text + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    if args.docs is not None:
        from bench.report import updateDocs

        updateDocs(args.docs, [("dcz", "### 7. dcz to the browser\n\n" + text)])
    return 0


if __name__ == "__main__":
    sys.exit(main())

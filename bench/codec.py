"""
Measure delta and whole-body codecs on the corpus of successive page versions.

    python -m bench.codec [--corpus PATH] [--json OUT] [--quick]

Over every consecutive pair of every sequence: bytes sent as % of identity,
and encode/decode MB/s of identity bytes (CPU time, C{time.process_time}).
Also: the offline C{zstd --patch-from} reference through the C{zstd} binary,
encode latency and GIL release for the largest page, and whether a base taken
from a sibling URL (or a trained dictionary) pays for a URL seen for the first
time. Prints tables to stdout (this is a command-line entry point).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli
import zstandard
from attrs import frozen

from bench.corpus import DEFAULT_CORPUS, CorpusMissing, Sequence, loadCorpus
from railgun.delta.codec import (
    BEST_LEVEL,
    GzipFullCodec,
    ZstdFullCodec,
    ZstdPatchCodec,
)
from railgun.delta.content import encodeBody

MAX = 64 * 1024 * 1024


@frozen
class Method:
    """
    One way of sending a version: C{encode(base, target)} and its inverse.
    Whole-body methods ignore the base.
    """

    name: str
    encode: Callable[[bytes, bytes], bytes]
    decode: Callable[[bytes, bytes], bytes]


def fullMethod(name: str, compress, decompress) -> Method:
    """
    A whole-body method from a compress and a decompress function.
    """
    return Method(name, lambda b, t: compress(t), lambda b, d: decompress(d))


def methods(quick: bool) -> list[Method]:
    """
    The methods measured; C{quick} keeps the informative few.
    """
    gz = GzipFullCodec()
    out = [
        fullMethod("gzip-6", gz.compress, lambda d: gz.decompress(d, MAX)),
    ]
    for level in (3, 6) if quick else (1, 3, 6, 19):
        z = ZstdFullCodec(level)
        out.append(
            fullMethod(f"zstd-{level}", z.compress, lambda d, z=z: z.decompress(d, MAX))
        )
    for q in (4, 5) if quick else (1, 4, 5, 6, 9):
        out.append(
            fullMethod(
                f"brotli-{q}",
                lambda t, q=q: brotli.compress(t, quality=q),
                brotli.decompress,
            )
        )
    patchLevels = [(3, None), (6, None), (9, None), (9, 6), (19, None)]
    if not quick:
        patchLevels[3:3] = [(1, None), (12, None), (16, None)]
        patchLevels.append((22, None))
    for level, searchLog in sorted(patchLevels, key=lambda p: (p[0], p[1] or 0)):
        codec = ZstdPatchCodec(level, searchLog, cacheBytes=0)
        suffix = "" if searchLog is None else f"s{searchLog}"
        out.append(
            Method(
                f"zstd-{level}{suffix}+prev",
                codec.encode,
                lambda b, d, c=codec: c.decode(b, d, MAX),
            )
        )
    return out


def measure(sequences: list[Sequence], method: Method) -> dict:
    """
    Run one method over every pair; check every decode.
    """
    perSeq = {}
    encT = decT = 0.0
    for seq in sequences:
        size = ident = 0
        for base, target in seq.pairs():
            t0 = time.process_time()
            data = method.encode(base, target)
            t1 = time.process_time()
            back = method.decode(base, data)
            t2 = time.process_time()
            if back != target:
                raise AssertionError(f"{method.name} round trip failed on {seq.name}")
            encT += t1 - t0
            decT += t2 - t1
            size += len(data)
            ident += len(target)
        perSeq[seq.name] = {"bytes": size, "identity": ident}
    total = sum(v["bytes"] for v in perSeq.values())
    ident = sum(v["identity"] for v in perSeq.values())
    return {
        "name": method.name,
        "bytes": total,
        "identity": ident,
        "percent": 100 * total / ident,
        "encodeMBps": ident / max(encT, 1e-9) / 1e6,
        "decodeMBps": ident / max(decT, 1e-9) / 1e6,
        "perSequence": perSeq,
    }


def cliReference(sequences: list[Sequence]) -> list[dict]:
    """
    Exact sizes from the C{zstd} binary's C{--patch-from} (offline best).
    """
    exe = shutil.which("zstd")
    if exe is None:
        return []
    version = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        bp, tp = os.path.join(tmp, "base"), os.path.join(tmp, "target")
        for args in (["-19"], ["--ultra", "-22", "--long"]):
            perSeq = {}
            for seq in sequences:
                size = ident = 0
                for base, target in seq.pairs():
                    Path(bp).write_bytes(base)
                    Path(tp).write_bytes(target)
                    out = subprocess.run(
                        [exe, "-q", "-c", f"--patch-from={bp}", *args, tp],
                        capture_output=True,
                        check=True,
                    ).stdout
                    size += len(out)
                    ident += len(target)
                perSeq[seq.name] = {"bytes": size, "identity": ident}
            total = sum(v["bytes"] for v in perSeq.values())
            ident = sum(v["identity"] for v in perSeq.values())
            results.append(
                {
                    "name": f"zstd CLI {' '.join(args)} --patch-from",
                    "bytes": total,
                    "identity": ident,
                    "percent": 100 * total / ident,
                    "perSequence": perSeq,
                    "version": version.strip(),
                }
            )
    return results


def _holdGil(seconds: float) -> Callable[[], object]:
    """
    A control: one C call that holds the GIL for about C{seconds} (sorting
    ints never returns to the bytecode loop, so it never lets go).
    """
    import random

    size = 1000
    while True:
        data = [random.random() for _ in range(size)]
        t0 = time.perf_counter()
        sorted(data)
        if time.perf_counter() - t0 >= seconds or size > 50_000_000:
            return lambda: sorted(data)
        size *= 2


def mainThreadStall(work: Callable[[], object], n: int) -> float:
    """
    Run C{work} C{n} times in a worker thread while this thread spins like
    a busy reactor; return the longest time this thread could not run.
    Work that releases the GIL leaves only scheduling noise; work that holds
    it stalls this thread for as long as it runs.
    """
    done = threading.Event()

    def worker() -> None:
        for _ in range(n):
            work()
        done.set()

    thread = threading.Thread(target=worker)
    longest = 0.0
    last = time.perf_counter()
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    thread.join()
    return longest


def latency(sequences: list[Sequence], level: int, searchLog: int | None) -> dict:
    """
    Per-encode wall time by page size (cold: base not prepared; warm: the
    prepared base reused), and the speed-up of two threads over one, which
    shows whether zstandard releases the GIL.
    """
    rows = []
    for seq in sequences:
        cold, warm = [], []
        for base, target in seq.pairs():
            codec = ZstdPatchCodec(level, searchLog)
            t0 = time.perf_counter()
            codec.encode(base, target)
            t1 = time.perf_counter()
            codec.encode(base, target)
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            warm.append(t2 - t1)
        rows.append(
            {
                "sequence": seq.name,
                "size": int(statistics.median(len(v) for v in seq.versions)),
                "coldMs": 1e3 * statistics.median(cold),
                "warmMs": 1e3 * statistics.median(warm),
            }
        )
    rows.sort(key=lambda r: r["size"])
    biggest = max(
        ((b, t) for s in sequences for b, t in s.pairs()), key=lambda p: len(p[1])
    )
    codec = ZstdPatchCodec(level, searchLog, cacheBytes=0)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        codec.encode(*biggest)
    inline = (time.perf_counter() - t0) / n
    stallEncode = mainThreadStall(lambda: codec.encode(*biggest), n)
    stallSleep = mainThreadStall(lambda: time.sleep(inline), n)
    stallHeld = mainThreadStall(_holdGil(inline), n)
    slow = ZstdPatchCodec(19, None, cacheBytes=0)
    t0 = time.perf_counter()
    slow.encode(*biggest)
    inline19 = time.perf_counter() - t0
    stall19 = mainThreadStall(lambda: slow.encode(*biggest), 3)
    stallHeld19 = mainThreadStall(_holdGil(inline19), 3)
    return {
        "level": level,
        "searchLog": searchLog,
        "bySequence": rows,
        "gil": {
            "size": len(biggest[1]),
            "encodes": n,
            "inlineMs": 1e3 * inline,
            "stallEncodeMs": 1e3 * stallEncode,
            "stallSleepMs": 1e3 * stallSleep,
            "stallHeldMs": 1e3 * stallHeld,
            "inline19Ms": 1e3 * inline19,
            "stall19Ms": 1e3 * stall19,
            "stallHeld19Ms": 1e3 * stallHeld19,
        },
    }


SIBLINGS = {
    # sequence -> another sequence of the same site
    "cdr-home": "cdr-feed-json",
    "cdr-feed-json": "cdr-home",
    "netcup-offers": "netcup-deals-json",
    "netcup-deals-json": "netcup-offers",
}


def siblings(sequences: list[Sequence], level: int, searchLog: int | None) -> dict:
    """
    What a URL seen for the first time costs with no base (zstd), with the
    latest version of another URL of the same site as base, with an older
    version of the same page (k-5, as under another URL: query strings,
    tracking parameters), and with a zstd dictionary trained per site on
    versions of its other URLs or on the same page's early versions.
    """
    bySeq = {s.name: s for s in sequences}
    full = ZstdFullCodec(level if level <= 19 else 19)
    full3 = ZstdFullCodec(3)
    patch = ZstdPatchCodec(level, searchLog, cacheBytes=0)
    rows = []
    for seq in sequences:
        vs = seq.versions
        targets = list(range(5, len(vs)))
        row: dict = {"sequence": seq.name, "identity": sum(len(vs[k]) for k in targets)}
        row["zstd-3"] = sum(len(full3.compress(vs[k])) for k in targets)
        row["full"] = sum(len(full.compress(vs[k])) for k in targets)
        row["stale k-5"] = sum(len(patch.encode(vs[k - 5], vs[k])) for k in targets)
        sib = SIBLINGS.get(seq.name)
        if sib is not None and sib in bySeq:
            other = bySeq[sib].versions
            row["sibling URL"] = sum(
                len(patch.encode(other[min(k, len(other) - 1)], vs[k])) for k in targets
            )
            samples = list(other)
        else:
            samples = []
        # Trained on the first five versions of this page plus any sibling:
        # an upper bound for a dictionary trained on the site's recent pages.
        samples = samples + list(vs[:5])
        # The trainer wants many samples: cut pages into 4 KB pieces.
        samples = [p[i : i + 4096] for p in samples for i in range(0, len(p), 4096)]
        try:
            trained = zstandard.train_dictionary(
                min(112 * 1024, max(1024, sum(map(len, samples)) // 10)), samples
            )
            cctx = zstandard.ZstdCompressor(level=min(level, 19), dict_data=trained)
            row["trained dict"] = sum(len(cctx.compress(vs[k])) for k in targets) + len(
                trained.as_bytes()
            ) // len(targets)
        except zstandard.ZstdError:
            row["trained dict"] = None
        rows.append(row)
    return {"level": level, "searchLog": searchLog, "rows": rows}


def pct(part: int, whole: int) -> str:
    """
    C{part} as a percentage of C{whole}, two decimals.
    """
    return f"{100 * part / whole:.2f}%"


def report(
    results: list[dict], cli: list[dict], lat: dict, sib: dict, info: dict
) -> str:
    """
    The Markdown tables pasted into C{docs/benchmarks.md}.
    """
    lines = []
    add = lines.append
    add(
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"zstandard {info['zstandard']} (libzstd {info['libzstd']}), "
        f"brotli {info['brotli']}; {info['pairs']} pairs, "
        f"{info['identity']:,} identity bytes."
    )
    add("")
    add("### Totals over all pairs")
    add("")
    add("| method | bytes | % of identity | encode MB/s | decode MB/s |")
    add("|---|---:|---:|---:|---:|")
    for r in results:
        add(
            f"| {r['name']} | {r['bytes']:,} | {r['percent']:.3f}% | "
            f"{r['encodeMBps']:.1f} | {r['decodeMBps']:.1f} |"
        )
    for r in cli:
        add(f"| {r['name']} (offline) | {r['bytes']:,} | {r['percent']:.3f}% | - | - |")
    add("")
    add(
        "brotli-11+prev: not measured; the Python brotli binding "
        f"({info['brotli']}) has no custom or prefix dictionary API."
    )
    add("")
    add("### Per sequence (% of identity)")
    add("")
    shown = [r for r in results if r["name"] in PER_SEQUENCE] + cli
    add("| sequence | " + " | ".join(r["name"] for r in shown) + " |")
    add("|---|" + "---:|" * len(shown))
    for name in results[0]["perSequence"]:
        cells = []
        for r in shown:
            s = r["perSequence"][name]
            cells.append(pct(s["bytes"], s["identity"]))
        add(f"| {name} | " + " | ".join(cells) + " |")
    add("")
    suffix = "" if lat["searchLog"] is None else f"s{lat['searchLog']}"
    add(f"### Encode latency, zstd-{lat['level']}{suffix}+prev (median per pair)")
    add("")
    add(
        "| sequence | median size | cold ms (base not prepared) | warm ms (prepared base reused) |"
    )
    add("|---|---:|---:|---:|")
    for r in lat["bySequence"]:
        add(
            f"| {r['sequence']} | {r['size']:,} | {r['coldMs']:.2f} | {r['warmMs']:.2f} |"
        )
    g = lat["gil"]
    add("")
    add(
        f"GIL: one encode of the largest page ({g['size']:,} bytes) takes "
        f"{g['inlineMs']:.2f} ms inline. Run {g['encodes']} times in a worker thread "
        "while the main thread spins like a busy reactor, the longest main-thread "
        f"stall was {g['stallEncodeMs']:.2f} ms; controls of the same duration: a "
        f"sleeping worker {g['stallSleepMs']:.2f} ms (scheduling noise), one C call "
        f"holding the GIL {g['stallHeldMs']:.2f} ms. At zstd-19 one encode takes "
        f"{g['inline19Ms']:.1f} ms: stall {g['stall19Ms']:.2f} ms against "
        f"{g['stallHeld19Ms']:.1f} ms for a GIL-holding call."
    )
    add("")
    suffix = "" if sib["searchLog"] is None else f"s{sib['searchLog']}"
    add(
        f"### First version of a URL: bases from elsewhere (versions 6.., zstd-{sib['level']}{suffix}, "
        "% of identity)"
    )
    add("")
    cols = ["zstd-3", "full", "sibling URL", "stale k-5", "trained dict"]
    add(
        "| sequence | zstd-3 no base | zstd no base | sibling URL as base | same page k-5 as base | trained dictionary |"
    )
    add("|---|---:|---:|---:|---:|---:|")
    tot: dict[str, list[int]] = {c: [0, 0, 0] for c in cols}
    for r in sib["rows"]:
        cells = []
        for c in cols:
            v = r.get(c)
            if v is None:
                cells.append("-")
            else:
                cells.append(pct(v, r["identity"]))
                tot[c][0] += v
                tot[c][1] += r["identity"]
                tot[c][2] += r["full"]
        add(f"| {r['sequence']} | " + " | ".join(cells) + " |")
    add(
        "| **total where available** | "
        + " | ".join(pct(*tot[c][:2]) if tot[c][1] else "-" for c in cols)
        + " |"
    )
    add(
        "| **zstd no base, same sequences** | "
        + " | ".join(pct(tot[c][2], tot[c][1]) if tot[c][1] else "-" for c in cols)
        + " |"
    )
    return "\n".join(lines)


PER_SEQUENCE = ("gzip-6", "zstd-3", "zstd-3+prev", "zstd-9s6+prev", "zstd-19+prev")


def machineInfo(sequences: list[Sequence]) -> dict:
    """
    What the figures depend on: CPUs, Python and library versions, corpus.
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "zstandard": zstandard.__version__,
        "libzstd": zstandard.ZSTD_VERSION
        and ".".join(map(str, zstandard.ZSTD_VERSION)),
        "brotli": getattr(brotli, "__version__", "?"),
        "pairs": sum(len(s.versions) - 1 for s in sequences),
        "identity": sum(len(t) for s in sequences for _, t in s.pairs()),
    }


#: size classes of the level table: (label, smallest, largest) page size.
SIZE_CLASSES = (
    ("< 32 KB", 0, 32 * 1024),
    ("32-128 KB", 32 * 1024, 128 * 1024),
    ("128-256 KB", 128 * 1024, 256 * 1024),
    ("> 256 KB", 256 * 1024, 1 << 40),
)


def levelTable(
    sequences: list[Sequence], levels: tuple[int, ...] = (9, 12, 16, 19)
) -> list[dict]:
    """
    Encode time and size per zstd level and page size class, to choose a
    level from an encode-time budget: for every pair, the delta's size, the
    CPU time of a cold encode (base not hashed yet) and of a warm one (a
    compressor that hashed the base kept, as C{ZstdPatchCodec.prepare}
    leaves it). Every delta is checked by decoding it.

    @return: one row per (size class, level): pairs, identity bytes, delta
        bytes, median cold and warm ms, and ns per byte (cold: per byte of
        base and target; warm: per target byte).
    """
    rows = []
    for label, low, high in SIZE_CLASSES:
        pairs = [
            (b, t)
            for seq in sequences
            for b, t in zip(seq.versions, seq.versions[1:], strict=False)
            if low <= len(b) < high
        ]
        if not pairs:
            continue
        for level in levels:
            cold, warm, coldNs, warmNs = [], [], [], []
            size = identity = 0
            for b, t in pairs:
                codec = ZstdPatchCodec(level)
                start = time.process_time()
                delta = codec.encodeAt(b, t, level)
                elapsed = time.process_time() - start
                cold.append(elapsed)
                coldNs.append(elapsed * 1e9 / (len(b) + len(t)))
                start = time.process_time()
                codec.encodeAt(b, t, level)
                elapsed = time.process_time() - start
                warm.append(elapsed)
                warmNs.append(elapsed * 1e9 / max(1, len(t)))
                if codec.decode(b, delta, len(t)) != t:
                    raise AssertionError(f"level {level} delta does not decode")
                size += len(delta)
                identity += len(t)
            rows.append(
                {
                    "class": label,
                    "level": level,
                    "pairs": len(pairs),
                    "identity": identity,
                    "bytes": size,
                    "cold_ms": statistics.median(cold) * 1e3,
                    "warm_ms": statistics.median(warm) * 1e3,
                    "cold_ns_per_byte": statistics.median(coldNs),
                    "warm_ns_per_byte": statistics.median(warmNs),
                }
            )
    return rows


def preparedTable(sequences: list[Sequence]) -> list[dict]:
    """
    What a prepared base buys (C{ZstdPatchCodec.prepare}): for every pair,
    per page size class, the CPU time of hashing the base at level 19 ahead
    of time (off the request's path), then of the frame against it with
    the base's tables copied and with the base searched in place
    (C{attach}), against level 9 and level 19 cold as the public API makes
    them; and the sizes. Every delta is checked by decoding it.

    @return: one row per size class.
    """
    from railgun._compat.zstd import PreparedBase

    rows = []
    for label, low, high in SIZE_CLASSES:
        pairs = [
            (b, t)
            for seq in sequences
            for b, t in zip(seq.versions, seq.versions[1:], strict=False)
            if low <= len(b) < high
        ]
        if not pairs:
            continue
        times: dict[str, list[float]] = {
            k: [] for k in ("nine", "cold", "prepare", "copied", "attached")
        }
        perByte: dict[str, list[float]] = {k: [] for k in times}
        sizes = dict.fromkeys(("nine", "cold", "copied", "attached"), 0)
        identity = 0
        memory = []
        check = ZstdPatchCodec()

        def timed(
            key: str,
            targetSize: int,
            work: Callable[..., Any],
            *args: Any,
            times: dict[str, list[float]] = times,
            perByte: dict[str, list[float]] = perByte,
        ) -> Any:
            start = time.process_time()
            result = work(*args)
            elapsed = time.process_time() - start
            times[key].append(elapsed)
            perByte[key].append(elapsed * 1e9 / max(1, targetSize))
            return result

        for b, t in pairs:
            windowLog = ZstdPatchCodec._windowFor(b, len(b))
            deltas = {
                "nine": timed("nine", len(t), ZstdPatchCodec(9).encodeAt, b, t, 9),
                "cold": timed("cold", len(t), ZstdPatchCodec(19).encodeAt, b, t, 19),
            }
            prepared = timed(
                "prepare", len(t), PreparedBase, b, BEST_LEVEL, windowLog, len(b)
            )
            memory.append(prepared.size)
            deltas["copied"] = timed("copied", len(t), prepared.compress, t)
            deltas["attached"] = timed(
                "attached", len(t), prepared.compress, t, False, True
            )
            for key, delta in deltas.items():
                if check.decode(b, delta, len(t)) != t:
                    raise AssertionError(f"{key} delta does not decode")
                sizes[key] += len(delta)
            identity += len(t)
        row: dict[str, Any] = {
            "class": label,
            "pairs": len(pairs),
            "identity": identity,
        }
        for key in times:
            row[f"{key}_ms"] = statistics.median(times[key]) * 1e3
            row[f"{key}_ns_per_byte"] = statistics.median(perByte[key])
        for key, n in sizes.items():
            row[f"{key}_bytes"] = n
        row["prepared_bytes"] = statistics.median(memory)
        rows.append(row)
    return rows


def preparedReport(rows: list[dict]) -> str:
    """
    @return: the prepared-base table as Markdown.
    """
    lines = [
        "| page size | pairs | level 9: bytes, ms | level 19 cold: bytes, ms | "
        "prepare ahead: ms, MB held | prepared, tables copied: bytes, ms (ns/B) "
        "| prepared, searched in place: bytes, ms (ns/B) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['class']} | {r['pairs']} | {r['nine_bytes']:,}, "
            f"{r['nine_ms']:.1f} | {r['cold_bytes']:,}, {r['cold_ms']:.1f} | "
            f"{r['prepare_ms']:.1f}, {r['prepared_bytes'] / 1e6:.1f} | "
            f"{r['copied_bytes']:,}, {r['copied_ms']:.1f} "
            f"({r['copied_ns_per_byte']:.0f}) | {r['attached_bytes']:,}, "
            f"{r['attached_ms']:.1f} ({r['attached_ns_per_byte']:.0f}) |"
        )
    return "\n".join(lines)


def levelReport(rows: list[dict]) -> str:
    """
    @return: the level table as Markdown.
    """
    lines = [
        "| page size | level | pairs | delta bytes (% of identity) | "
        "vs level 9 | cold ms (median) | warm ms (median) | cold ns/B "
        "(base+target) | warm ns/B (target) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    nine = {r["class"]: r["bytes"] for r in rows if r["level"] == 9}
    for r in rows:
        ref = nine.get(r["class"])
        lines.append(
            f"| {r['class']} | {r['level']} | {r['pairs']} | {r['bytes']:,} "
            f"({pct(r['bytes'], r['identity'])}) | "
            + (f"{r['bytes'] / ref:.3f}" if ref else "–")
            + f" | {r['cold_ms']:.1f} | {r['warm_ms']:.1f} | "
            f"{r['cold_ns_per_byte']:.0f} | {r['warm_ns_per_byte']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    Command-line entry point; returns the exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument(
        "--quick", action="store_true", help="fewer levels, no zstd CLI reference"
    )
    parser.add_argument(
        "--levels",
        action="store_true",
        help="only the encode time per level and page size table",
    )
    args = parser.parse_args(argv)
    try:
        sequences = loadCorpus(args.corpus)
    except CorpusMissing as e:
        print(f"bench.codec: {e}", file=sys.stderr)
        return 2
    if args.levels:
        rows = levelTable(sequences)
        print(levelReport(rows))
        prepared = preparedTable(sequences)
        print()
        print(preparedReport(prepared))
        if args.json is not None:
            args.json.write_text(
                json.dumps({"levels": rows, "prepared": prepared}, indent=1)
            )
        return 0
    info = machineInfo(sequences)
    results = [measure(sequences, m) for m in methods(args.quick)]
    # The content-encoding levels the edge uses towards clients, as wired.
    for coding in (b"gzip", b"br", b"zstd"):
        results.append(
            measure(
                sequences,
                Method(
                    f"client {coding.decode()} (encodeBody)",
                    lambda b, t, c=coding: encodeBody(t, c),
                    lambda b, d, c=coding: _decodeClient(d, c),
                ),
            )
        )
    cli = [] if args.quick else cliReference(sequences)
    lat = latency(sequences, 9, 6)
    sib = siblings(sequences, 9, 6)
    text = report(results, cli, lat, sib, info)
    print(text)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "results": results,
                    "cli": cli,
                    "latency": lat,
                    "siblings": sib,
                },
                indent=1,
            )
        )
    return 0


def _decodeClient(data: bytes, coding: bytes) -> bytes:
    """
    Decode a client body as a browser would (bounded).
    """
    from railgun.delta.content import decodeContentEncoding

    return decodeContentEncoding(data, coding, MAX)


if __name__ == "__main__":
    sys.exit(main())

"""
Tables, JSON and the benchmark sections of C{docs/benchmarks.md}.

C{docs/benchmarks.md} is shared with the codec engineer: this module only
ever replaces the text between its own markers (C{<!-- bench:NAME:start -->}
... C{<!-- bench:NAME:end -->}), appending a section after the existing
content when its markers are absent, and re-reads the file right before
each edit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """
    @return: a Markdown table (also readable as plain text).
    """
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(t: dict[str, Any]) -> str:
    """
    @return: "met" or "missed", and by how much (share of the limit).
    """
    if t["value"] is None:
        return "**missed** (no measurement)"
    word = "met" if t["met"] else "**missed**"
    if t["by"] is None:
        return word
    return f"{word} (by {abs(t['by']) * 100:.0f}%)"


def targetsTable(results: Sequence[dict[str, Any]]) -> str:
    """
    @return: every target of every scenario, with its verdict.
    """
    rows = []
    for result in results:
        for t in result.get("targets", []):
            rows.append(
                [
                    t["name"],
                    _fmt(t["value"]),
                    f"{t['op']} {_fmt(t['limit'])}",
                    verdict(t),
                ]
            )
    if not rows:
        return "(no targets measured)"
    return table(["target", "measured", "required", "verdict"], rows)


def wanTables(r: dict[str, Any]) -> str:
    p = r["params"]
    shared = (
        "shared by all of an alternative's connections, as on one real path"
        if p.get("shared_bottleneck")
        else "for each connection"
    )
    head = (
        f"RTT {p['rtt_s'] * 1000:.0f} ms, {p['rate_bps'] / 1e6:.0f} Mbit/s "
        f"{shared} (bench.wan). Sequential: {p['fetches_per_alternative']} fetches per "
        f"alternative, one every {p['interval_s']} s, over "
        f"{len(p['sequences'])} sequences ({', '.join(p['sequences'])}; "
        f"{p['source']}), versions 1..{p['versions_per_sequence']}. Bursts: "
        f"{p['bursts']} x {p['burst']} concurrent fetches. Times are to the last "
        "body byte; every body was checked against the version it must be."
    )
    rows = []
    for a in r["alternatives"]:
        s, b = a["sequential"], a["burst"]
        rows.append(
            [
                a["name"],
                _ms(s["median_s"]),
                _ms(s["p95_s"]),
                f"{s['wan_bytes_per_fetch']:,.0f}",
                _ms(b["median_s"]),
                _ms(b["p95_s"]),
                _ms(b["fetch_median_s"]),
                f"{b['wan_bytes_per_fetch']:,.0f}",
                s["errors"] + b["errors"],
            ]
        )
    main = table(
        [
            "alternative",
            "seq. median ms",
            "seq. p95 ms",
            "WAN bytes/fetch",
            "burst median ms",
            "burst p95 ms",
            "fetch in burst median ms",
            "WAN bytes/fetch (bursts)",
            "errors",
        ],
        rows,
    )
    ratios = table(
        ["ratio (same run)", "value"],
        [[k, _fmt(v)] for k, v in r.get("ratios", {}).items()],
    )
    perSequence = r.get("per_sequence")
    if not perSequence:
        return f"{head}\n\n{main}\n\n{ratios}"
    names = [a["name"] for a in r["alternatives"]]
    seqRows = []
    for s in perSequence:
        m = s["median_s"]
        keep, rail = m.get("direct-keepalive"), m.get("railgun")
        seqRows.append(
            [s["sequence"], f"{s['identity_bytes']:,}", f"{s['gzip_bytes']:,}"]
            + [_ms(m.get(n)) for n in names]
            + [_fmt(rail / keep if rail and keep else None)]
        )
    bySequence = table(
        ["sequence", "page bytes", "gzip bytes"]
        + [f"{n} median ms" for n in names]
        + ["railgun / keep-alive"],
        seqRows,
    )
    return (
        f"{head}\n\n{main}\n\n{ratios}\n\nSequential fetches by sequence "
        f"(median of {p['versions_per_sequence']} fetches each):\n\n{bySequence}"
    )


def loopbackTables(r: dict[str, Any]) -> str:
    p = r["params"]
    head = (
        f"{p['tool']}, {p['connections']} connections, {p['duration_s']} s x "
        f"{p['rounds']} rounds (median req/s), {p['page_bytes']:,}-byte page. CPU "
        "µs per request per process: utime+stime from /proc over the measured "
        "runs / requests completed (wrk's own CPU not included)."
    )
    rows = []
    for a in r["alternatives"]:
        cpu = ", ".join(f"{n} {_fmt(v, 0)}" for n, v in a["cpu_us_per_request"].items())
        rows.append(
            [
                a["name"],
                f"{a['rps_median']:,.0f}",
                _fmt(a["cpu_us_per_request_total"], 0),
                cpu,
                a["errors"],
            ]
        )
    text = (
        head
        + "\n\n"
        + table(
            [
                "alternative",
                "req/s",
                "CPU µs/req (all processes)",
                "CPU µs/req by process",
                "errors",
            ],
            rows,
        )
    )
    paired = r.get("railgun_over_revproxy_by_round")
    if paired:
        text += (
            "\n\nrailgun / twisted-revproxy req/s within each round (the "
            "alternatives run back to back; the target takes the median, which "
            "the machine's drift between rounds does not move): "
            + ", ".join(_fmt(x) for x in paired)
            + "."
        )
    text += _fetchCost(r)
    for note in r.get("notes", []):
        text += f"\n\n{note}"
    return text


def _fetchCost(r: dict[str, Any]) -> str:
    """
    The diagnostic chain against the real one: what fetching through treq
    costs the origin role per request (by difference, same run).
    """
    diagnostics = {d["name"]: d for d in r.get("diagnostics", [])}
    memory = diagnostics.get("railgun-role-from-memory")
    real = next((a for a in r["alternatives"] if a["name"] == "railgun"), None)
    if memory is None or real is None:
        return ""

    def role(row: dict[str, Any]) -> float | None:
        return next(
            (
                v
                for n, v in row["cpu_us_per_request"].items()
                if n.endswith("origin-role")
            ),
            None,
        )

    def edge(row: dict[str, Any]) -> float | None:
        return next(
            (v for n, v in row["cpu_us_per_request"].items() if n.endswith("-edge")),
            None,
        )

    rows = [
        [
            row["name"],
            f"{row['rps_median']:,.0f}",
            _fmt(edge(row), 0),
            _fmt(role(row), 0),
            row["errors"],
        ]
        for row in (real, memory)
    ]
    realRole, memoryRole = role(real), role(memory)
    share = ""
    if realRole and memoryRole is not None:
        share = (
            f" Fetching through treq (treq, twisted.web's Agent, pool and "
            f"HTTP/1.1 client, the origin socket) costs the origin role "
            f"{realRole - memoryRole:,.0f} µs of its {realRole:,.0f} µs per "
            f"request ({(realRole - memoryRole) / realRole:.0%})."
        )
    return (
        "\n\nDiagnostic, not an alternative: the same chain with an origin "
        "role that answers from memory instead of fetching (`bench.memoryrole`; "
        "same rounds, same load)."
        + share
        + "\n\n"
        + table(
            ["chain", "req/s", "edge CPU µs/req", "origin role CPU µs/req", "errors"],
            rows,
        )
    )


def bulkTables(r: dict[str, Any]) -> str:
    size = r["params"]["bytes"]
    rounds = r["params"].get("rounds", 1)
    head = (
        f"{size / 1024**2:,.0f} MiB each way through one stream; client curl "
        f"(download GET, upload PUT); {rounds} round(s), the alternatives taking "
        "turns in alternating order. MB/s and seconds: median over the rounds; "
        "CPU s: mean per transfer. MB = 10^6 bytes. Peak RSS = VmHWM."
    )
    rows = []
    for a in r["alternatives"]:
        for direction in ("download", "upload"):
            d = a[direction]
            cpu = ", ".join(f"{n} {v:.1f}" for n, v in d["cpu_s"].items())
            rss = ", ".join(f"{n} {v:.0f}" for n, v in d["peak_rss_mb"].items())
            rows.append(
                [
                    a["name"],
                    direction,
                    _fmt(d["mb_per_s"]),
                    _fmt(d["seconds"]),
                    cpu,
                    rss,
                    d["error"] or 0,
                ]
            )
    text = (
        head
        + "\n\n"
        + table(
            [
                "alternative",
                "direction",
                "MB/s",
                "seconds",
                "CPU s by process",
                "peak RSS MB by process",
                "error",
            ],
            rows,
        )
    )
    paired = r.get("railgun_over_plain_by_round")
    if paired:
        text += (
            "\n\nrailgun / plain TLS MB/s within each round (the target takes "
            "the median): "
            + "; ".join(
                f"{direction} " + ", ".join(_fmt(x) for x in ratios)
                for direction, ratios in paired.items()
            )
            + "."
        )
    return text


def concurrencyTables(r: dict[str, Any]) -> str:
    s = r["streams"]
    rows = [
        [
            f"{s['streams']:,} streams on one TLS link",
            s["errors"],
            f"dialer {s['rss_kb']['dialer_open'] / 1024:.0f}, acceptor "
            f"{s['rss_kb']['acceptor_open'] / 1024:.0f}",
            f"dialer {s['bytes_per_stream']['dialer']:,.0f}, acceptor "
            f"{s['bytes_per_stream']['acceptor']:,.0f}",
            f"all open in {s['seconds_to_open_all']:.2f} s, done in "
            f"{s['seconds_total']:.2f} s",
        ]
    ]
    c = r["connections"]
    if "skipped" in c:
        rows.append(
            [
                "client connections at the edge",
                "–",
                "–",
                "–",
                f"skipped: {c['skipped']}",
            ]
        )
    else:
        rows.append(
            [
                f"{c['connections']:,} client connections at the edge (wrk, 1 s origin "
                "delay)",
                c["errors"],
                ", ".join(f"{n} {v / 1024:.0f}" for n, v in c["peak_rss_kb"].items()),
                f"edge {c['edge_bytes_per_connection']:,.0f}",
                f"{c['requests']:,} requests in {c['seconds']:.0f} s, "
                f"~{c['mean_in_flight']:,.0f} in flight on average",
            ]
        )
    return table(
        ["test", "errors", "RSS MB at peak", "bytes per stream/connection", "notes"],
        rows,
    )


def codecTables(r: dict[str, Any]) -> str:
    if r.get("output"):
        return (
            "Output of `python -m bench.codec` (owned by the codec benchmark; "
            "see its own section of docs/benchmarks.md):\n\n```\n"
            + r["output"].strip()
            + "\n```"
        )
    return "(no output)"


def scalingTables(r: dict[str, Any]) -> str:
    """
    @return: scenario 6's tables: 1 vs 2 workers per role, and the failover run.
    """
    w = r["workers"]
    rows = []
    for row in w["rows"]:
        cpu = row["cpu_us_per_request"]
        rows.append(
            [
                row["workers"],
                f"{row['rps_median']:.0f}",
                ", ".join(f"{x:.0f}" for x in row["rps_runs"]),
                f"{cpu['edge']:.0f}",
                f"{cpu['origin-role']:.0f}",
                f"{cpu['origin-server']:.0f}",
                row["errors"],
            ]
        )
    p = w["params"]
    f = r["failover"]
    fp = f["params"]
    return (
        f"Loopback chain (wrk -t1 -c{p['connections']}, {p['duration_s']} s x"
        f" {p['rounds']} rounds, alternated), edge and origin role at the same"
        " number of workers, versions in one memcached; CPU per request summed"
        " over each role's supervisor and workers.\n\n"
        + table(
            [
                "workers per role",
                "req/s (median)",
                "req/s by round",
                "edge CPU us/req",
                "origin role CPU us/req",
                "origin server CPU us/req",
                "errors",
            ],
            rows,
        )
        + f"\n\n2 workers / 1 worker, req/s: {w['rps_ratio']:.2f} (by round: "
        + ", ".join(f"{x:.2f}" for x in w["rps_ratio_by_round"])
        + ")\n\n"
        + f"Failover: one edge, two origin roles sharing memcached, wrk -c"
        f"{fp['connections']} for {fp['duration_s']} s; one origin role killed"
        f" (SIGKILL) at {fp['kill_at_s']:.0f} s and started again 2 s later.\n\n"
        + table(
            ["requests", "req/s", "non-2xx", "socket errors", "restarted role CPU s"],
            [
                [
                    f["requests"],
                    f"{f['rps']:.0f}",
                    f["non2xx"],
                    f["socket_errors"],
                    f"{f['restarted_cpu_s_under_load']:.2f}",
                ]
            ],
        )
    )


FORMATTERS = {
    "wan": ("1. WAN page fetch", wanTables),
    "loopback": ("2. Loopback throughput and CPU cost", loopbackTables),
    "bulk": ("3. Bulk transfer", bulkTables),
    "concurrency": ("4. Concurrency", concurrencyTables),
    "codec": ("5. Codec", codecTables),
    "scaling": ("6. Scaling out: workers and failover", scalingTables),
    "dcz": ("7. dcz to the browser", lambda r: _dczTables(r)),
}


def _dczTables(r: dict[str, Any]) -> str:
    from bench.dcz import tables

    return tables(r)


def scenarioText(r: dict[str, Any]) -> str:
    """
    @return: the Markdown text of one scenario's results (or why it did not
        run).
    """
    title, formatter = FORMATTERS[r["scenario"]]
    if r.get("failed"):
        return f"### {title}\n\nFAILED: {r['failed']}"
    if r.get("skipped"):
        return f"### {title}\n\nSkipped: {r['skipped']}"
    return f"### {title}\n\n{formatter(r)}"


def profileText(profile: dict[str, Any], top: int = 10) -> str:
    """
    @return: the hot spots of each profiled role.
    """
    parts = []
    for role, data in profile.items():
        if not isinstance(data, dict) or "skipped" in data:
            parts.append(
                f"{role}: {data.get('skipped') if isinstance(data, dict) else data}"
            )
            continue
        rows = [
            [f"{share * 100:.1f}%", f"`{name}`"] for name, share in data["self"][:top]
        ]
        parts.append(
            f"**{role}** ({data['samples']} samples), own time:\n\n"
            + table(["share", "function"], rows)
        )
        rows = [
            [f"{share * 100:.1f}%", f"`{name}`"]
            for name, share in data["inclusive"][:top]
        ]
        parts.append(
            f"**{role}**, including callees:\n\n" + table(["share", "function"], rows)
        )
    return "\n\n".join(parts)


def machineText(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('nproc')} cores ({machine.get('cpu')}), "
        f"{machine.get('memory_mb')} MB RAM, Python {machine.get('python')}, "
        f"Twisted {machine.get('twisted')}, nginx {machine.get('nginx')}, "
        f"{machine.get('platform')}"
    )


def writeJson(path: Path, data: dict[str, Any]) -> None:
    """
    Write C{data} as JSON (creating the directory).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replaceSection(text: str, name: str, body: str) -> str:
    """
    @return: C{text} with the section C{name} set to C{body}: replaced
        between its markers when present, appended after everything else
        otherwise. Nothing outside the markers changes.
    @raise ValueError: when the markers are malformed (one without the
        other, or end before start).
    """
    start, end = markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    i, j = text.find(start), text.find(end)
    if i == -1 and j == -1:
        if not text.strip():
            return block + "\n"
        return text.rstrip("\n") + "\n\n" + block + "\n"
    if i == -1 or j == -1 or j < i:
        raise ValueError(f"malformed markers for section {name!r}")
    return text[:i] + block + text[j + len(end) :]


def updateDocs(path: Path, sections: Sequence[tuple[str, str]]) -> None:
    """
    Set each C{(name, body)} section of C{path}, re-reading the file right
    before the edit and replacing it atomically (rename), so that a
    concurrent editor's other sections are kept.
    """
    for name, body in sections:
        text = path.read_text() if path.exists() else ""
        new = replaceSection(text, name, body)
        fd, tmp = tempfile.mkstemp(prefix=".bench-", dir=str(path.parent))
        try:
            with os.fdopen(fd, "w") as f:
                f.write(new)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

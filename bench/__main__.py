"""
The benchmark harness: Railgun against the alternatives, in one run.

    python -m bench all [--quick] [--corpus PATH] [--json FILE] [--docs FILE]
    python -m bench wan|loopback|bulk|concurrency|codec|scaling|dcz [...]

Starts every process it needs on 127.0.0.1 and stops them; prints the
tables to stdout, writes a JSON file (default C{bench/results/}) and, in a
full run, the benchmark sections of C{docs/benchmarks.md}. Exits 1 when any
scenario failed or counted an error (a missed performance target is
reported, not an error). See C{docs/benchmarks.md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.corpus import DEFAULT_CORPUS
from bench.harness import (
    REPO_ROOT,
    HarnessError,
    machineInfo,
    raiseFileLimit,
    runInReactor,
)

SCENARIOS = ("wan", "loopback", "bulk", "concurrency", "codec", "scaling", "dcz")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=["all"],
        help="all (default) or any of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, well under a minute; checks for errors",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help=f"page-version corpus (default {DEFAULT_CORPUS})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default bench/results/bench-<time>.json)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="write the tables into this file's bench sections "
        "(default: docs/benchmarks.md in a full run, none with --quick)",
    )
    parser.add_argument("--no-docs", action="store_true", help="write no docs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the edge and origin role under the loopback load",
    )
    return parser


async def _codec(reactor: Any, quick: bool, corpus: Path) -> dict[str, Any]:
    """
    Run the codec engineer's C{python -m bench.codec} as it is.
    """
    from twisted.internet.threads import deferToThread

    from bench.harness import runTool

    if not (REPO_ROOT / "bench" / "codec.py").exists():
        return {"scenario": "codec", "skipped": "bench/codec.py is absent", "errors": 0}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "codec.json"
        argv = [
            sys.executable,
            "-m",
            "bench.codec",
            "--corpus",
            str(corpus),
            "--json",
            str(out),
        ] + (["--quick"] if quick else [])
        done = await deferToThread(runTool, argv, 300 if quick else 1800)
        stdout = done.stdout.decode(errors="replace")
        stderr = done.stderr.decode(errors="replace").strip()
        if done.returncode == 2 and "corpus" in stderr:
            return {"scenario": "codec", "skipped": stderr, "errors": 0}
        if done.returncode != 0:
            return {
                "scenario": "codec",
                "failed": f"exit {done.returncode}: {stderr[-500:]}",
                "errors": 1,
            }
        data = json.loads(out.read_text()) if out.exists() else None
    return {
        "scenario": "codec",
        "skipped": None,
        "errors": 0,
        "output": stdout,
        "results": data,
        "command": shlex.join(argv[1:]),
    }


async def runScenario(
    reactor: Any, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    """
    Run one scenario; a harness failure becomes a result saying so.
    """
    started = time.monotonic()
    try:
        if name == "wan":
            from bench.wanfetch import runWan

            result = await runWan(reactor, args.quick, args.corpus)
        elif name == "loopback":
            from bench.loopback import runLoopback

            result = await runLoopback(reactor, args.quick, profile=args.profile)
        elif name == "bulk":
            from bench.bulk import runBulk

            result = await runBulk(reactor, args.quick)
        elif name == "scaling":
            from bench.scaling import runScaling

            result = await runScaling(reactor, args.quick)
        elif name == "concurrency":
            from bench.concurrency import runConcurrency

            result = await runConcurrency(reactor, args.quick)
        elif name == "dcz":
            from bench.dcz import runDcz

            result = await runDcz(reactor, args.quick, args.corpus)
        else:
            result = await _codec(reactor, args.quick, args.corpus)
    except HarnessError as e:
        result = {"scenario": name, "failed": str(e), "errors": 1}
    except Exception as e:  # noqa: BLE001 (report, then go on with the others)
        import traceback

        result = {
            "scenario": name,
            "failed": f"{e!r}\n{traceback.format_exc()}",
            "errors": 1,
        }
    result["wall_s"] = time.monotonic() - started
    return result


async def run(reactor: Any, args: argparse.Namespace) -> int:
    names = list(SCENARIOS) if "all" in args.scenarios else args.scenarios
    command = "python -m bench " + shlex.join(sys.argv[1:])
    machine = machineInfo()
    out = sys.stdout
    out.write(
        f"# Railgun benchmarks ({'quick' if args.quick else 'full'})\n"
        f"machine: {report.machineText(machine)}\ncommand: {command}\n\n"
    )
    out.flush()
    results = []
    for name in names:
        result = await runScenario(reactor, name, args)
        results.append(result)
        out.write(report.scenarioText(result) + f"\n\n({result['wall_s']:.0f} s)\n\n")
        if result.get("profile"):
            out.write(
                "Profile of the Railgun roles under the loopback load (py-spy):\n\n"
                + report.profileText(result["profile"])
                + "\n\n"
            )
        out.flush()
    out.write("### Targets\n\n" + report.targetsTable(results) + "\n")
    errors = sum(int(r.get("errors") or 0) for r in results)
    failed = [r["scenario"] for r in results if r.get("failed")]
    data = {
        "command": command,
        "quick": args.quick,
        "machine": machine,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "errors": errors,
        "failed": failed,
        "results": results,
    }
    path = args.json or (
        REPO_ROOT
        / "bench"
        / "results"
        / time.strftime(f"bench-%Y%m%d-%H%M%S{'-quick' if args.quick else ''}.json")
    )
    report.writeJson(path, data)
    out.write(
        f"\nresults: {path}\nerrors: {errors}; failed scenarios: "
        f"{', '.join(failed) or 'none'}\n"
    )
    docs = args.docs
    if docs is None and not args.quick and not args.no_docs:
        docs = REPO_ROOT / "docs" / "benchmarks.md"
    if docs is not None and not args.no_docs:
        complete = "all" in args.scenarios
        report.updateDocs(docs, docsSections(results, machine, command, complete))
        out.write(f"docs: {docs}\n")
        if not complete:
            out.write(
                "docs: only the sections of the scenarios run were replaced; "
                "the summary of targets is rewritten by `all` runs only\n"
            )
    return 1 if errors or failed else 0


def docsSections(
    results: list[dict[str, Any]],
    machine: dict[str, Any],
    command: str,
    complete: bool = True,
) -> list[tuple[str, str]]:
    """
    @param complete: whether every scenario ran; a partial run leaves the
        summary of all targets alone rather than replacing it with its own.
    @return: the C{(marker name, Markdown)} sections this run owns in
        C{docs/benchmarks.md}.
    """
    summary = (
        "## Railgun against the alternatives\n\n"
        f"Command (repository root): `{command}` (`tox -e bench` runs the same; "
        "`--quick` runs every scenario with tiny sizes in well under a minute).\n"
        f"Machine: {report.machineText(machine)}. Measured "
        f"{time.strftime('%Y-%m-%d')}; every ratio compares alternatives measured "
        "in the same run, on the same machine, against the same origin process.\n\n"
        "### Targets\n\n" + report.targetsTable(results)
    )
    sections = [("summary", summary)] if complete else []
    for r in results:
        if r["scenario"] == "codec":
            # The codec engineer's own section carries those tables.
            continue
        text = report.scenarioText(r)
        if r.get("profile"):
            text += (
                "\n\nProfile of the Railgun roles under this load (py-spy, "
                "sampling):\n\n" + report.profileText(r["profile"])
            )
        sections.append((r["scenario"], text))
    return sections


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS + ("all",)]
    if unknown:
        _parser().error(f"unknown scenario(s): {', '.join(unknown)}")
    raiseFileLimit()
    return runInReactor(run, args)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m benchmarks`: run every benchmark against the sandbox, write results/latest.json and latest.md.

    python -m benchmarks                 # everything (~15 min on 2 cores); also rewrites benchmarks/RESULTS.md
    python -m benchmarks --quick         # a shorter smoke variant of everything (~2 min)
    python -m benchmarks --only latency  # one (or several: --only cold_start,memory)
    python -m benchmarks --only fork --soak-minutes 2   # benchmark 10 with a shorter soak (default 10 min)

Benchmarks are measurements, not tests: the command fails only if a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import Options, Result

HERE = Path(__file__).resolve().parent
ORDER = ["cold_start", "memory", "latency", "crash_recovery", "storm_429", "scale", "snapshots", "metrics", "voice_rejoin", "fork"]


def soak_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 24 * 60:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes from 0 to 1440")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", metavar="NAMES", help=f"comma-separated subset of: {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="shorter runs and smaller fleets (a smoke test)")
    parser.add_argument("--soak-minutes", type=soak_minutes, default=None, metavar="MIN",
                        help="minutes of the fork benchmark's soak (100 interactions per bot-minute); default 10, "
                             "0.5 with --quick; 0 skips it")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="directory for latest.json/latest.md")
    parser.add_argument("--no-readme-table", action="store_true",
                        help="do not rewrite benchmarks/RESULTS.md (a full run rewrites it by default)")
    return parser.parse_args(argv)


def status(result: Result) -> str:
    if result.status:
        return result.status
    return "n/a" if result.met is None else ("met" if result.met else "MISSED")


def markdown(results: list[Result], command: str, meta: dict) -> str:
    lines = [
        f"Measured {meta['when']} on {meta['machine']} with `{command}` "
        f"({meta['seconds']:.0f} s). Ratios compare numbers measured in the same run; absolute numbers beside.",
        "",
        "| # | Benchmark | Result | Target | Status |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, start=1):
        lines.append(f"| {i} | {r.title} | {r.headline} | {r.target} | {status(r)} |")
    lines.append("")
    for r in results:
        if r.notes:
            lines.append(f"**{r.title}**")
            lines.extend(f"- {note}" for note in r.notes)
            for table in r.details.get("tables", []):
                lines.append("")
                lines.extend(table)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


async def run_all(names: list[str], opts: Options) -> list[Result]:
    results = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {module.TITLE} ({name}) ...", flush=True)
        started = time.monotonic()
        try:
            result = await module.run(opts)
        except Exception as exc:  # noqa: BLE001 - report it, go on with the others
            traceback.print_exc()
            result = Result(name, module.TITLE, f"did not run: {type(exc).__name__}: {exc}", "-", False,
                            {"error": traceback.format_exc()})
        result.seconds = time.monotonic() - started
        print(f"   {result.headline}  [{status(result)}, {result.seconds:.0f} s]", flush=True)
        for note in result.notes:
            print(f"   - {note}", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    command = ("python -m benchmarks" + (" --quick" if args.quick else "")
               + (f" --only {args.only}" if args.only else "")
               + (f" --soak-minutes {args.soak_minutes:g}" if args.soak_minutes is not None else ""))
    started = time.monotonic()
    results = asyncio.run(run_all(names, Options(quick=args.quick, soak_minutes=args.soak_minutes)))
    meta = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
                   f"{platform.system()}",
        "seconds": time.monotonic() - started,
        "command": command,
        "quick": args.quick,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [r.as_dict() for r in results]}
    (args.out / "latest.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    table = markdown(results, command, meta)
    (args.out / "latest.md").write_text(table, encoding="utf-8")
    if not args.quick and not args.only and not args.no_readme_table:
        (HERE / "RESULTS.md").write_text("# Benchmark results\n\n" + table, encoding="utf-8")
    print(f"\nwrote {args.out / 'latest.json'} and {args.out / 'latest.md'}")
    print(table)
    failed = [r.name for r in results if r.details.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

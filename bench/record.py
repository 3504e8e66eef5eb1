"""bench/results.json: the latest benchmark figures as {"name", "value", "unit", "target", "command", "date"}."""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"
BENCH = RESULTS.parent


def study_arguments(doc: str, store: str, argv: list[str] | None, committed: bool = False) -> argparse.Namespace:
    """The command line of a study's table script: --runs-dir (default bench/out/<store>, or with `committed` the
    store kept in git, bench/stores/<store>), --csv-dir (bench/) and --results (bench/results.json)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=BENCH / ("stores" if committed else "out") / store)
    parser.add_argument("--csv-dir", type=Path, default=BENCH)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file the headline figures merge into")
    return parser.parse_args(argv)


def entry(name: str, value: float | None, unit: str, target: float | None, command: str, note: str = "") -> dict:
    """One results.json entry dated today; `note` (optional) says what a missing value or a target means."""
    result = {"name": name, "value": value, "unit": unit, "target": target, "command": command,
              "date": datetime.date.today().isoformat()}
    if note:
        result["note"] = note
    return result


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reproduces a benchmark, as a user would type it."""
    return shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def merge_results(entries: list[dict], path: Path = RESULTS) -> None:
    """Replace same-named entries in results.json, keeping every other benchmark's figures."""
    existing = json.loads(path.read_text()) if path.exists() else []
    names = {item["name"] for item in entries}
    merged = [item for item in existing if item["name"] not in names] + entries
    path.write_text(json.dumps(sorted(merged, key=lambda item: item["name"]), indent=2) + "\n")

"""Execute analysis/curriculum_results.ipynb headless and export it as one self-contained HTML page.

    python analysis/make_report.py                           # store: $GTN_MONGO_URL, else $GTN_RUNS_DIR or runs/
    python analysis/make_report.py --runs-dir /tmp/study     # a file store
    python analysis/make_report.py --mongo mongodb://127.0.0.1:27018/gtn_lab
    make report REPORT_ARGS="--runs-dir /tmp/study --rolling-window 10 --select '{\"outer_steps\": 1000}'"
    python analysis/make_report.py --runs-dir bench/stores/goodai --dataset fashion_mnist
    python analysis/make_report.py --strip                   # clear the outputs Jupyter saved in the notebook

Figures land in analysis/figures/ (or --figures-dir), the page in analysis/report.html (or --output) and a
results-only copy without the code cells beside it (analysis/report_results.html), to send on. The
notebook file itself is never rewritten, so its committed copy stays free of outputs.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ANALYSIS = Path(__file__).resolve().parent
REPO = ANALYSIS.parent
NOTEBOOK = ANALYSIS / "curriculum_results.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:85%}pre.error{background:#fdd}
img{max-width:100%}table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:.2em .5em}"""


def config_filter(text: str) -> str:
    """argparse type of --select: a JSON object of config values."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--select {text!r}: {error}") from None
    if not isinstance(values, dict):
        raise argparse.ArgumentTypeError(f"--select {text!r}: expected a JSON object, e.g. '{{\"outer_steps\": 1000}}'")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, help="file store to read (sets GTN_RUNS_DIR, unsets GTN_MONGO_URL)")
    parser.add_argument("--mongo", metavar="URL", help="MongoDB to read instead (sets GTN_MONGO_URL)")
    parser.add_argument("--figures-dir", type=Path, default=ANALYSIS / "figures", help="where the PNGs go")
    parser.add_argument("--output", type=Path, default=ANALYSIS / "report.html", help="the HTML page")
    parser.add_argument("--rolling-window", type=int, default=None, help="evaluations in the rolling mean")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default=None,
                        help="the dataset of the GoodAI-study and strength sections (sets GTN_DATASET; default mnist)")
    parser.add_argument("--select", metavar="JSON", type=config_filter, default=None,
                        help='config values the runs must have, e.g. \'{"outer_steps": 1000}\' (sets GTN_SELECT)')
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may run")
    parser.add_argument("--strip", action="store_true", help="only clear the notebook's saved outputs, then exit")
    return parser


def notebook_environment(args: argparse.Namespace) -> dict[str, str]:
    """The kernel's environment: the store and chart parameters the notebook's first cell reads."""
    env = dict(os.environ)
    if args.runs_dir:
        env["GTN_RUNS_DIR"] = str(args.runs_dir.resolve())
        env.pop("GTN_MONGO_URL", None)
    if args.mongo:
        env["GTN_MONGO_URL"] = args.mongo
    if args.rolling_window is not None:
        env["GTN_ROLLING_WINDOW"] = str(args.rolling_window)
    if args.select is not None:
        env["GTN_SELECT"] = args.select
    if args.dataset is not None:
        env["GTN_DATASET"] = args.dataset
    env["GTN_FIGURES_DIR"] = str(args.figures_dir.resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))  # `import analysis`
    return env


def execute(notebook: nbformat.NotebookNode, env: dict[str, str], timeout: int) -> None:
    """Run every cell in a fresh kernel started in analysis/ (this interpreter's ipykernel)."""
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ANALYSIS)}})
    client.execute(env=env)


def strip_outputs(path: Path) -> None:
    """Clear the outputs and execution counts Jupyter saved in a notebook, so that only its source is committed."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)


def markdown_html(source: str) -> str:
    """A minimal rendering of a markdown cell: headings and paragraphs, everything else as escaped text."""
    parts = []
    for block in source.split("\n\n"):
        heading = re.match(r"(#{1,6}) (.*)", block)
        if heading:
            level = len(heading.group(1))
            parts.append(f"<h{level}>{html.escape(heading.group(2))}</h{level}>")
        else:
            parts.append(f"<p>{html.escape(block)}</p>")
    return "\n".join(parts)


def output_html(output: nbformat.NotebookNode) -> str:
    """One cell output: an image, an HTML table, text or a traceback."""
    if output.output_type == "stream":
        return f"<pre>{html.escape(output.text)}</pre>"
    if output.output_type == "error":
        return f'<pre class="error">{html.escape(ANSI.sub("", chr(10).join(output.traceback)))}</pre>'
    data = output.get("data", {})
    if "image/png" in data:
        return f'<img src="data:image/png;base64,{data["image/png"].strip()}">'
    if "text/html" in data:
        return data["text/html"]
    return f"<pre>{html.escape(data.get('text/plain', ''))}</pre>"


def to_html(notebook: nbformat.NotebookNode, title: str, show_code: bool = True) -> str:
    """The executed notebook as one page: markdown, code (unless `show_code` is off: the results-only page) and
    outputs (images inline as base64; tables as the notebook rounded them)."""
    body = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            body.append(markdown_html(cell.source))
        elif cell.cell_type == "code":
            if show_code:
                body.append(f"<pre>{html.escape(cell.source)}</pre>")
            body.extend(output_html(output) for output in cell.get("outputs", []))
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def results_page(report: Path) -> Path:
    """Where the results-only page of `report` goes: beside it, `<name>_results.html`."""
    return report.with_name(f"{report.stem}_results{report.suffix}")


def main(argv: list[str] | None = None) -> int:
    """Execute the notebook, write the HTML page (also when a cell failed, to show where), exit 1 on failure."""
    args = build_parser().parse_args(argv)
    if args.strip:
        strip_outputs(NOTEBOOK)
        return 0
    if args.runs_dir and args.mongo:
        raise SystemExit("--runs-dir and --mongo: give one store")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    failed = None
    try:
        execute(notebook, notebook_environment(args), args.timeout)
    except CellExecutionError as error:
        failed = error
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_html(notebook, "GTN curriculum study: results"))
    results_only = results_page(args.output)
    results_only.write_text(to_html(notebook, "GTN curriculum study: results", show_code=False))
    if failed is not None:
        print(f"the notebook failed (partial report in {args.output}):\n{ANSI.sub('', str(failed))}", file=sys.stderr)
        return 1
    print(f"report: {args.output}; results only (no code, to send on): {results_only}; figures: {args.figures_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

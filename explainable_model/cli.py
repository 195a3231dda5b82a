"""Command line interface: ``explainable-model score`` and ``explainable-model report``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from explainable_model._version import __version__
from explainable_model.exceptions import ExplainableModelError

PACKAGE_LOGGER = "explainable_model"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _params(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"--params must be a JSON object, e.g. '{{\"top_k\": 3}}' ({error})"
        ) from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--params must be a JSON object, got {type(value).__name__}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``explainable-model`` command."""
    parser = argparse.ArgumentParser(
        prog="explainable-model", description="Tools for models saved by explainable_model."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    score = commands.add_parser(
        "score",
        help="score CSV or Parquet files in chunks into Parquet parts, resumably",
        description=(
            "Score a CSV or Parquet file, or a folder of them (in name order), in chunks. OUTPUT gets one "
            "part-NNNNN.parquet per chunk, holding the input's columns followed by the model's output "
            "columns, and _manifest.json. Rerunning the same command resumes after the completed parts."
        ),
    )
    score.add_argument("model_uri", metavar="MODEL_URI", help="MLflow model URI or local model folder")
    score.add_argument("input", metavar="INPUT", help="a .csv or .parquet file, or a folder of them")
    score.add_argument("output", metavar="OUTPUT", help="output folder")
    score.add_argument("--chunk-size", type=_positive, default=10_000, help="rows per chunk and part (default 10000)")
    score.add_argument("--params", type=_params, default=None, help="request parameters as a JSON object")
    score.add_argument("--explainers", default=None, help='"shap", "lime", "shap,lime" or "none" (overrides --params)')
    score.add_argument("--top-k", type=int, default=None, help="reason columns per row (overrides --params)")
    score.add_argument("--workers", type=_positive, default=1, help="processes scoring chunks (default 1)")
    score.add_argument(
        "--rejects", default=None, metavar="PATH", help="write bad rows to this .parquet or .csv file and go on"
    )
    score.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip chunks already in OUTPUT's manifest (default); --no-resume starts over",
    )
    score.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    score.add_argument("-v", "--verbose", action="store_true", help="print debug log lines")
    score.set_defaults(handler=score_command)
    _add_report_parser(commands)
    return parser


def _add_report_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="write the explanation report (HTML, PNG plots, importance table) for a model and data",
        description=(
            "Explain the rows of DATA (a .csv or .parquet file) with the model and write into OUTPUT: "
            "report.html (self-contained), importance.csv and .json, shap_bar.png, shap_beeswarm.png, and "
            "force_row_<i>.html and lime_row_<i>.html for the first sample rows."
        ),
    )
    report.add_argument("model_uri", metavar="MODEL_URI", help="MLflow model URI or local model folder")
    report.add_argument("data", metavar="DATA", help="a .csv or .parquet file of rows to explain")
    report.add_argument("output", metavar="OUTPUT", help="output folder, created if missing")
    report.add_argument("--sample-rows", type=int, default=3, help="first rows given force and LIME pages (default 3)")
    report.add_argument("--explained-class", default="auto", help='"auto", "predicted" or a class label (default auto)')
    report.add_argument("--no-lime", dest="lime", action="store_false", help="leave out the LIME pages")
    report.add_argument("--max-rows", type=_positive, default=1000, help="rows explained for the plots (default 1000)")
    report.add_argument("--max-display", type=_positive, default=15, help="features shown in the plots (default 15)")
    report.add_argument("--seed", type=int, default=0, help="seed of the row sample and of sampling explainers")
    report.add_argument("--title", default=None, help="heading of the report")
    report.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    report.add_argument("-v", "--verbose", action="store_true", help="print debug log lines")
    report.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    """Run ``explainable-model report``; return the exit status."""
    from explainable_model.report_builder import report

    files = report(
        args.model_uri,
        args.data,
        args.output,
        sample_rows=args.sample_rows,
        explained_class=args.explained_class,
        lime=args.lime,
        max_rows=args.max_rows,
        max_display=args.max_display,
        seed=args.seed,
        title=args.title,
    )
    if not args.quiet:
        print(f"Wrote {len(files.paths())} files to {files.directory}; open {files.report}")
    return 0


def _configure_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(level)
    if not package.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        package.addHandler(handler)
    package.propagate = False


def score_command(args: argparse.Namespace) -> int:
    """Run ``explainable-model score``; return the exit status."""
    from explainable_model.batch import score_files

    params = dict(args.params or {})
    if args.explainers is not None:
        params["explainers"] = args.explainers
    if args.top_k is not None:
        params["top_k"] = args.top_k
    summary = score_files(
        args.model_uri,
        args.input,
        args.output,
        chunk_size=args.chunk_size,
        params=params or None,
        workers=args.workers,
        rejects=args.rejects,
        resume=args.resume,
        progress=False if args.quiet else None,
    )
    if not args.quiet:
        print(
            f"Scored {summary.rows} rows ({summary.rows_this_run} in this run) in {summary.seconds:.1f} s, "
            f"{summary.rows_per_second:.0f} rows/s; output: {summary.output} ({len(summary.parts)} parts)"
            + (f"; {summary.rejected} rejected rows in {summary.rejects}" if summary.rejects else "")
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``explainable-model`` command; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; by default ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet, args.verbose)
    try:
        return int(args.handler(args))
    except ExplainableModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130

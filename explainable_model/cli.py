"""Command line interface: ``explainable-model score``, ``report``, ``promote`` and ``serve``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from mlflow.exceptions import MlflowException

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


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="print debug log lines")


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
    score.add_argument(
        "--explained-class",
        default=None,
        help='class that attributions and reasons explain: a label, "predicted" or "all" (overrides --params; '
        "by default a binary model explains its positive class, the second of its classes)",
    )
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
    _add_log_options(score)
    score.set_defaults(handler=score_command)
    _add_report_parser(commands)
    _add_promote_parser(commands)
    _add_serve_parser(commands)
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
    _add_log_options(report)
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



def _add_promote_parser(commands: Any) -> None:
    from explainable_model.registry import CHECK_NAMES, DEFAULT_BLOCKING, METRICS

    promote = commands.add_parser(
        "promote",
        help="check a registered model version and move an alias to it",
        description=(
            "Run the promotion checks on version VERSION of registered model NAME, store the report with the "
            "version, and move the alias to it only if every blocking check passed. Exit status: 0 when "
            "promoted (or a dry run passed), 3 when rejected or in conflict with another promotion, 1 on errors."
        ),
    )
    promote.add_argument("name", metavar="NAME", help="registered model name")
    promote.add_argument("version", metavar="VERSION", help="model version to promote")
    promote.add_argument("--alias", default="champion", help="alias to move (default champion)")
    promote.add_argument("--validation-data", required=True, metavar="FILE", help=".csv or .parquet file")
    promote.add_argument("--target", required=True, metavar="COLUMN", help="true label or value column")
    promote.add_argument("--metric", default="auto", choices=["auto", *METRICS], help="quality metric (default auto)")
    promote.add_argument("--quality-tolerance", type=float, default=0.01, help="fraction of the holder's figure")
    promote.add_argument("--min-quality", type=float, default=None, help="quality floor, or ceiling for errors")
    promote.add_argument("--additivity-tolerance", type=float, default=None, help="in attribution units")
    promote.add_argument("--min-drift-correlation", type=float, default=0.5, help="Spearman rho (default 0.5)")
    promote.add_argument("--latency-budget-ms", type=float, default=250.0, help="single-row p50 (default 250)")
    promote.add_argument("--latency-calls", type=_positive, default=30, help="timed calls (default 30)")
    promote.add_argument("--explain-rows", type=_positive, default=200, help="rows explained (default 200)")
    promote.add_argument(
        "--blocking",
        default=",".join(DEFAULT_BLOCKING),
        help=f"comma-separated checks that must pass, of {','.join(CHECK_NAMES)} (default: all but latency)",
    )
    promote.add_argument("--dry-run", action="store_true", help="print the report; store and move nothing")
    promote.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_log_options(promote)
    promote.set_defaults(handler=promote_command)





def _add_serve_parser(commands: Any) -> None:
    # -h is the host, as in `mlflow models serve`, so help is --help only.
    serve = commands.add_parser(
        "serve",
        add_help=False,
        help="serve a model over REST with MLflow's routes, strict params and value-free errors",
        description=(
            "Serve MODEL_URI with the routes and request formats of `mlflow models serve`. Parameters that the "
            "model does not declare are rejected, and error messages never repeat request values."
        ),
    )
    serve.add_argument("model_uri", metavar="MODEL_URI", help="MLflow model URI or local model folder")
    serve.add_argument("-h", "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("-p", "--port", type=_positive, default=5000, help="port to bind (default 5000)")
    serve.add_argument("-w", "--workers", type=_positive, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "-t", "--timeout", type=_positive, default=None, help="seconds per request before HTTP 504 (default 60)"
    )
    serve.add_argument("--help", action="help", help="show this help message and exit")
    serve.set_defaults(handler=serve_command, quiet=False, verbose=False)


def serve_command(args: argparse.Namespace) -> int:
    """Run ``explainable-model serve`` until it is stopped; return the exit status."""
    from explainable_model.serving import serve

    try:
        serve(args.model_uri, host=args.host, port=args.port, workers=args.workers, timeout=args.timeout)
    except KeyboardInterrupt:
        return 130
    return 0


@contextlib.contextmanager
def _command_logging(quiet: bool, verbose: bool) -> Iterator[None]:
    """Print the package's log records on stderr while a command runs, then restore the logger.

    Restoring matters when ``main`` is called in a process that goes on: the handler writes to
    the stderr of the moment, which a caller may close afterwards.
    """
    package = logging.getLogger(PACKAGE_LOGGER)
    saved = package.level, package.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    level = logging.INFO
    if quiet:
        level = logging.WARNING
    elif verbose:
        level = logging.DEBUG
    package.setLevel(level)
    package.addHandler(handler)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(saved[0])
        package.propagate = saved[1]


def score_command(args: argparse.Namespace) -> int:
    """Run ``explainable-model score``; return the exit status."""
    from explainable_model.batch import score_files

    params = dict(args.params or {})
    if args.explainers is not None:
        params["explainers"] = args.explainers
    if args.top_k is not None:
        params["top_k"] = args.top_k
    if args.explained_class is not None:
        params["explained_class"] = args.explained_class
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


def promote_command(args: argparse.Namespace) -> int:
    """Run ``explainable-model promote``; return the exit status."""
    from explainable_model.registry import promote

    report = promote(
        args.name,
        args.version,
        args.alias,
        validation_data=args.validation_data,
        target=args.target,
        metric=args.metric,
        quality_tolerance=args.quality_tolerance,
        min_quality=args.min_quality,
        additivity_tolerance=args.additivity_tolerance,
        min_drift_correlation=args.min_drift_correlation,
        latency_budget_ms=args.latency_budget_ms,
        latency_calls=args.latency_calls,
        explain_rows=args.explain_rows,
        blocking=[name.strip() for name in args.blocking.split(",") if name.strip()],
        dry_run=args.dry_run,
    )
    if not args.quiet:
        print(report.to_json() if args.json else report.to_text())
    return 0 if report.status == "promoted" or (report.status == "dry_run" and report.passed) else 3


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``explainable-model`` command; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; by default ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(argv)
    try:
        with _command_logging(args.quiet, args.verbose):
            return int(args.handler(args))
    except ExplainableModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except MlflowException as error:
        # MLflow's own errors (a model or version not found, a store that cannot be reached)
        # get one line; --verbose adds the traceback.
        if args.verbose:
            traceback.print_exc()
        hint = ""
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            import mlflow

            # A relative sqlite:///mlflow.db store depends on the working directory.
            hint = f" (tracking URI {mlflow.get_tracking_uri()}, registry URI {mlflow.get_registry_uri()})"
        print(f"error: {error.message}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130

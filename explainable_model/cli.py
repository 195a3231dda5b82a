"""Command line interface: ``explainable-model score MODEL_URI INPUT OUTPUT``."""

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
    _add_serve_parser(commands)
    return parser


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
    from mlflow.exceptions import MlflowException

    from explainable_model.serving import serve

    try:
        serve(args.model_uri, host=args.host, port=args.port, workers=args.workers, timeout=args.timeout)
    except KeyboardInterrupt:
        return 130
    except MlflowException as error:
        if isinstance(error, ExplainableModelError):
            raise
        print(f"error: {error.message}", file=sys.stderr)
        return 1
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
